"""The Redis broker: Dramatiq's, with waking consumers, batched acks, bulk sends, priorities and recovery."""
