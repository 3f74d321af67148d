"""The workflow's side of fcnlib: config load/validate/resolve, job entries, script glue."""
