"""todo-wsgi's browser client: ``index.html``, ``client.js`` and ``client.css``, plain files.

Package data only, no code: ``todo_wsgi`` reads the three files once per app
(``importlib.resources``) and serves them as they are at ``/``, ``/client.js``
and ``/client.css``. No build step; how the client is organised and the rules
it keeps are in docs/web-client.md.
"""
