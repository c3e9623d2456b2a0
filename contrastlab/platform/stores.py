"""The stores runs write to, made safe to share: MLflow's tracking store and a sweep's Optuna storage.

- Secrets. A URI may carry a password (`http://user:pw@host`, `postgresql://user:pw@host/db`) or a
  token in its query. `redact` is the form that may be logged, tagged or printed. For an MLflow server
  the credentials move into MLflow's own variables (MLFLOW_TRACKING_USERNAME/PASSWORD) and the run
  uses the bare URI, so that MLflow's own "View run" lines carry no secret either.
- First use. Several processes opening a new SQLite store at once race in its schema migration (MLflow's
  `duplicate column name`); the store is created and migrated once, under a file lock beside it.
- Reachability. A server is asked once at start with a short timeout, so a wrong address or a
  read-only folder is one line at once, not minutes of retries and pages of tracebacks.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from contrastlab.errors import ConfigError

SQLITE_PREFIX = "sqlite:///"
SECRET_QUERY_KEYS = re.compile(r"pass|pwd|token|secret|key|credential|signature", re.IGNORECASE)
URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]+")
USERINFO_PASSWORD = re.compile(r"(://[^/@:\s]*):[^@/\s]*@")
QUERY_PAIR = re.compile(r"([?&;])([^=&;#\s]+)=([^&;#\s]*)")
PROBE_TIMEOUT_S = 10  # a tracking server that does not answer within this is reported, not waited for
INIT_LOCK_TIMEOUT_S = 600  # another process migrating the same new store: wait this long at most


def redact(uri: str) -> str:
    """`uri` with the password of its user part and any secret-looking query value replaced by ***."""
    uri = USERINFO_PASSWORD.sub(r"\1:***@", uri)
    return QUERY_PAIR.sub(lambda m: f"{m[1]}{m[2]}=***" if SECRET_QUERY_KEYS.search(m[2]) else m[0], uri)


def redact_text(text: str) -> str:
    """`text` (a config dump, an error message) with every URI in it redacted."""
    return URI.sub(lambda m: redact(m[0]), text)


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI, None for any other."""
    if not uri.startswith(SQLITE_PREFIX):
        return None
    return Path(uri[len(SQLITE_PREFIX) :].split("?", 1)[0])


@contextlib.contextmanager
def first_use_lock(database: Path, key: str) -> Iterator[None]:
    """Held while one process creates or migrates the SQLite database at `database`; the others wait."""
    from filelock import FileLock, Timeout

    folder = database.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"{key}: cannot create {folder} ({err.strerror}): choose a writable place") from err
    writable = os.access(folder, os.W_OK) and (not database.exists() or os.access(database, os.W_OK))
    if not writable:
        raise ConfigError(
            f"{key}: {database if database.exists() else folder} is read-only; make it writable "
            f"(chmod u+w) or point {key} at a store in a writable folder"
        )
    try:
        with FileLock(f"{database}.init.lock", timeout=INIT_LOCK_TIMEOUT_S):
            yield
    except Timeout as err:
        raise ConfigError(
            f"{key}: waited {INIT_LOCK_TIMEOUT_S} s for another process to set up {database}; "
            f"if none is running, remove {database}.init.lock"
        ) from err


def move_credentials_to_env(uri: str) -> str:
    """For an http(s) MLflow server, `uri` without its user part, which goes to MLflow's own variables."""
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or "@" not in parts.netloc:
        return uri
    userinfo, host = parts.netloc.rsplit("@", 1)
    user, _, password = userinfo.partition(":")
    os.environ.setdefault("MLFLOW_TRACKING_USERNAME", unquote(user))
    if password:
        os.environ.setdefault("MLFLOW_TRACKING_PASSWORD", unquote(password))
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def prepare_tracking_store(uri: str, key: str = "tracking.uri") -> str:
    """Make the MLflow store at `uri` ready for this process and return the URI to use.

    An embedded SQLite store is named by its absolute path and is created and migrated under the
    first-use lock; any store is then read
    once, with retries off and a short timeout, and a failure is a ConfigError naming the redacted URI.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    uri = move_credentials_to_env(uri)
    database = sqlite_path(uri)
    if database is not None:
        # MLflow keeps one engine per URI string: a relative path would mean another cwd's store later on
        database = database.absolute()
        uri = f"{SQLITE_PREFIX}{database}"
    lock = first_use_lock(database, key) if database is not None else contextlib.nullcontext()
    with lock, _quick_http():
        try:
            mlflow.MlflowClient(uri).search_experiments(max_results=1)
        except (MlflowException, OSError, ImportError) as err:
            raise ConfigError(f"{key}={redact(uri)}: the MLflow store does not answer ({_reason(err)})") from err
        except Exception as err:  # SQLAlchemy and requests raise their own types for a broken or absent store
            raise ConfigError(f"{key}={redact(uri)}: the MLflow store cannot be used ({_reason(err)})") from err
    return uri


def prepare_sqlite_storage(url: str, key: str, create):
    """`create()` (which opens an Optuna RDB storage at `url`, creating its tables) under the first-use lock."""
    database = sqlite_path(url)
    if database is None:
        return create()
    with first_use_lock(database, key):
        return create()


@contextlib.contextmanager
def _quick_http() -> Iterator[None]:
    """MLflow's HTTP requests without retries and with a short timeout, for the start-up probe only."""
    saved = {k: os.environ.get(k) for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")}
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(PROBE_TIMEOUT_S)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _reason(err: BaseException) -> str:
    """The last line of an error, short and without secrets."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    text = lines[-1] if lines else type(err).__name__
    if "Max retries exceeded" in text or "Connection refused" in text:
        found = re.search(r"\[Errno -?\d+\] ([^'\")]+)|(Connection refused)", text)
        text = found.group(1) or found.group(2) if found else "the connection failed"
    return redact_text(text)[:300]
