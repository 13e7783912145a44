"""Probing: targets, their schedule, one probe run, and what it measured."""
