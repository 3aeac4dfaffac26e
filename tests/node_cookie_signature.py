"""The real npm ``cookie-signature`` package (1.x, what express-session and cookie-parser use), run by Node.

The interop oracle for signed cookies: vectors come from the package itself,
never from a re-implementation.  ``.ci/run`` installs it into ``.ci/node``
(gitignored); when it is missing there, the first test that needs it runs
``npm install`` into the same folder.  Without Node or npm (or without the
registry), the tests skip with the reason locally and fail under
``KITSESSION_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from servers import service_missing

PACKAGE = "cookie-signature@1"
NODE_DIR = Path(__file__).resolve().parent.parent / ".ci" / "node"
MODULE = NODE_DIR / "node_modules" / "cookie-signature"

#: express-session's cookie value: "s:" + cookie-signature's sign(); unsign() of what follows "s:"
_SCRIPT = r"""
const signature = require('cookie-signature');
const requests = JSON.parse(require('fs').readFileSync(0, 'utf8'));
const answers = requests.map(([what, secret, value]) => {
  if (what === 'sign') return 's:' + signature.sign(value, secret);
  if (what === 'unsign') return value.startsWith('s:') ? signature.unsign(value.slice(2), secret) : false;
  if (what === 'encode') return encodeURIComponent(value);  // what cookie.serialize() applies
  throw new Error('unknown request ' + what);
});
process.stdout.write(JSON.stringify({version: require('cookie-signature/package.json').version, answers}));
"""


def _module() -> Path:
    if shutil.which("node") is None:
        service_missing("node is not installed: cannot run the npm cookie-signature package")
    if not (MODULE / "package.json").exists():
        npm = shutil.which("npm")
        if npm is None:
            service_missing(f"npm is not installed: cannot install {PACKAGE}")
        result = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--prefix", str(NODE_DIR), PACKAGE],
            capture_output=True, text=True, timeout=300, check=False,
        )
        if result.returncode != 0 or not (MODULE / "package.json").exists():
            service_missing(f"npm install {PACKAGE} failed: {(result.stdout + result.stderr)[-500:]}")
    return MODULE


def run(requests: list[tuple[str, str, str]]) -> tuple[str, list[Any]]:
    """Answer ``(what, secret, value)`` requests with the real package, in one Node process.

    ``what``: ``sign`` (express-session's ``s:`` + ``sign(value, secret)``),
    ``unsign`` (the id, or ``False``) or ``encode`` (``encodeURIComponent``).
    Returns the package version and the answers in order.
    """
    module = _module()
    env = {**os.environ, "NODE_PATH": str(module.parent)}
    completed = subprocess.run(["node", "-e", _SCRIPT], input=json.dumps(requests), capture_output=True,
                               text=True, timeout=60, check=False, env=env)
    assert completed.returncode == 0, completed.stderr[-2000:]
    reply = json.loads(completed.stdout)
    assert len(reply["answers"]) == len(requests)
    return reply["version"], reply["answers"]
