"""Packaging for kitsession-wsgi: the single source of its metadata."""

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(r'^__version__ = "([^"]+)"', (HERE / "kitsession_wsgi" / "__init__.py").read_text(), re.M)

EXTRAS = {
    "flask": ["flask>=2.3"],
    "peewee": ["peewee>=3.17"],
    "postgres": ["peewee>=3.17", "psycopg2-binary>=2.9"],
    "mysql": ["peewee>=3.17", "pymysql>=1.1"],
    "memcached": ["pymemcache>=4.0"],
    "redis": ["redis>=5.0"],
    # KITSESSION_MIGRATE_FLASK_SESSION: Flask-Session's Redis records are msgpack, read by msgspec
    "flask-session": ["flask>=2.3", "redis>=5.0", "msgspec>=0.18"],
    # kitsession_wsgi.metrics: instruments recorded through the global MeterProvider
    "otel": ["opentelemetry-api>=1.23"],
}
EXTRAS["all"] = sorted({req for reqs in EXTRAS.values() for req in reqs})
# the documentation site (`make docs`): Sphinx, the furo theme, Markdown pages through MyST
EXTRAS["docs"] = ["sphinx>=7.4", "furo>=2024.1", "myst-parser>=3.0"]
# What `make run` installs: the example app (examples/flask_app) and its server, nothing else.
EXTRAS["demo"] = ["flask>=2.3", "peewee>=3.17", "waitress>=3.0"]
EXTRAS["dev"] = EXTRAS["all"] + EXTRAS["docs"] + [
    "pytest>=8",
    "mypy>=1.10",
    "hypothesis>=6.100",
    "waitress>=3.0",
    # tests/test_deploy_workers.py: two real worker processes
    "gunicorn>=22.0",
    "playwright>=1.40",
    # web frameworks the SessionMiddleware is tested under (tests/test_frameworks.py)
    "bottle>=0.13",
    "falcon>=4.0",
    "pyramid>=2.0",
    "django>=4.2",
    # Flask's own test suite (tests/test_flask_suite.py runs it from the installed Flask's sdist)
    "asgiref>=3.2",
    "greenlet>=3.0",
    "python-dotenv>=1.0",
    # Flask-WTF's own suite (tests/test_flask_extension_suites.py, from its sdist)
    "flask-wtf>=1.2",
    # the switch from Flask-Session 0.8 (tests/test_flask_session_switch.py)
    "flask-session>=0.8,<0.9",
    "cachelib>=0.13",
    "flask-sqlalchemy>=3.1",
    "sqlalchemy>=2.0",
    # Flask-Login without glue (tests/test_flask_login.py)
    "flask-login>=0.6.3",
    "semantic-version>=2.10",  # imported by Flask-Login's own suite (tests/test_flask_login_suite.py)
    # tests/test_metrics.py reads the metrics back through the SDK's in-memory reader
    "opentelemetry-sdk>=1.23",
]

setup(
    name="kitsession-wsgi",
    version=VERSION.group(1) if VERSION else "0.0.0",
    description="Server-side cookie sessions for Flask and any WSGI app, with signed ids, "
    "key rotation and Memory, SQL, memcached and Redis stores.",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    # An SPDX expression (PEP 639); the text ships in the sdist and the wheel.
    license="MIT",
    license_files=["LICENSE"],
    packages=find_packages(include=["kitsession_wsgi", "kitsession_wsgi.*"]),
    package_data={"kitsession_wsgi": ["py.typed"]},
    python_requires=">=3.10",
    install_requires=["werkzeug>=2.3", "blinker>=1.6"],
    extras_require=EXTRAS,
    classifiers=[
        "Framework :: Flask",
        "Programming Language :: Python :: 3",
        "Topic :: Internet :: WWW/HTTP :: WSGI :: Middleware",
        "Typing :: Typed",
    ],
)
