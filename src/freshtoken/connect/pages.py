"""The HTML page that ends a popup flow (Nango's callback page, same script contract).

The page sets ``window.__nangoOAuthError`` (``{message, errorType}`` or null), posts
``nango_oauth_callback_success`` or ``nango_oauth_callback_error`` to ``window.opener`` and to the
``nango-oauth-callback`` BroadcastChannel, and closes itself on ``nango_oauth_callback_ack`` or
500 ms after a success. Messages are escaped for both HTML and script contexts; they never
contain a code, token or secret (the callers guarantee it). ``Referrer-Policy: no-referrer``
keeps the callback URL (which holds the authorization code) out of any later request.
"""

from __future__ import annotations

import html

import orjson
from starlette.responses import HTMLResponse

_HEADERS = {
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'",
}

_SCRIPT = """
(function () {
  var error = %(error)s;
  window.__nangoOAuthError = error;
  var message = error
    ? { type: 'nango_oauth_callback_error', payload: error }
    : { type: 'nango_oauth_callback_success' };
  try { if (window.opener) { window.opener.postMessage(message, '*'); } } catch (e) {}
  var channel = null;
  try {
    channel = new BroadcastChannel('nango-oauth-callback');
    channel.postMessage(message);
    channel.onmessage = function (event) {
      if (event.data && event.data.type === 'nango_oauth_callback_ack') { window.close(); }
    };
  } catch (e) {}
  window.addEventListener('message', function (event) {
    if (event.data && event.data.type === 'nango_oauth_callback_ack') { window.close(); }
  });
  if (!error) { setTimeout(function () { window.close(); }, 500); }
})();
"""


def _script_json(value: object) -> str:
    # JSON inside <script>: escape what could end the element or start a comment.
    text = orjson.dumps(value).decode()
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def callback_page(error_type: str | None = None, message: str | None = None) -> HTMLResponse:
    """The page for a finished flow: 200 on success, 400 with the error otherwise."""
    error = None if error_type is None else {"message": message or "", "errorType": error_type}
    title = "Authorization complete" if error is None else "Authorization failed"
    text = (
        "You can close this window."
        if error is None
        else f"{html.escape(error_type or '')}: {html.escape(message or '')}"
    )
    body = (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>'
        + title
        + "</title></head><body><p>"
        + text
        + "</p><script>"
        + _SCRIPT % {"error": _script_json(error)}
        + "</script></body></html>"
    )
    return HTMLResponse(body, status_code=200 if error is None else 400, headers=_HEADERS)
