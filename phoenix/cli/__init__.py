"""The `phoenix` command: the seeds' verbs (create, sync, LetsGo, setup-hypervisor, start/stop/delete, plan, status)
on the same doit tasks as `doit`, so the two never disagree. One module per verb group."""
