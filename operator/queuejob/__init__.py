"""queuejob package."""
