"""kopf handlers of the QueueJob operator, one concern per module (imported by operator_main)."""
