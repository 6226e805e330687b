"""`imnkit review`: a local web page to check the faces of photos before they are masked.

``session`` holds the photos, their faces and the work (preview, approval); ``app`` is the ASGI
app that serves them on loopback behind a one-time token; ``server`` binds and runs it. Needs the
optional extra ``imnkit[review]`` (Starlette and uvicorn); the page itself is plain HTML/JS/CSS in
``static/``, shipped with the package.
"""
