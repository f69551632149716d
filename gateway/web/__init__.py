"""The web interface: server-rendered pages over the services the JSON API uses.

`gateway.web.routes.install_web(app)` wires it into the app.
"""
