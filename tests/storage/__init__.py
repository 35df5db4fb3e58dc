"""Tests of the team-database storage layer (``brickrun.storage``)."""
