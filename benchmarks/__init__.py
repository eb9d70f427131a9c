"""vidjudge."""
