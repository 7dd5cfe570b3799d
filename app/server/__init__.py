"""The run server (`steerlab serve`): acquisition in its own process, steered and watched by clients.

Processes and messages: docs/server.md. ``protocol`` is the wire format (JSON + raw numpy buffers,
never pickle), ``endpoint`` where a server listens and its token, ``queue`` the persistent queue
and history, ``server`` the process itself; clients use :class:`app.client.Client`.
"""
