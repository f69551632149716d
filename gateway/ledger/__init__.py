"""The gateway's transparency log: appends in the business transaction, batched integration."""
