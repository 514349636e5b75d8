"""Azure Functions triggers: adapt bindings to mccf_backup and back, nothing more."""
