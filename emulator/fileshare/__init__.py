"""Azure Files (File service REST API) for one or more storage accounts."""
