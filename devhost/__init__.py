"""The dev harness: what stands in for the Azure Functions host where Core Tools are not installed.

Never deployed (.funcignore). In Azure, the Functions host serves HTTP, fires timers, feeds queue
messages to the queue triggers and keeps an invocation context per call; here:

- ``devserver``: the app's HTTP routes with function keys, and the admin API that runs a timer;
- ``queuepump``: the queue triggers, with the host's visibility timeout, dequeue count and poison queue;
- ``invocation``: one call as the Python worker makes it (the context the host's log capture needs);
- ``azurite``: Microsoft's Azurite (Blob, Queue, Table) from npm, for ``AzureWebJobsStorage``;
- ``emulator_process``: the local Azure emulator in a process of its own, as Azure is elsewhere;
- ``localdev``: ``make emulator`` and ``make local-settings``, for the real host (``func start``);
- ``envvars``: settings scoped to a block, as the host scopes them to the app.
"""
