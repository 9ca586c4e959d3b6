"""Backups: online, consistent, checked; a restore starts a new epoch.

Edge: SQLite's online backup API copies the live database (WAL and all) page by page while
the service runs; the copy is then checked with ``PRAGMA integrity_check``. Restoring puts
the copy in place and gives the node a new epoch, so sequence numbers the lost database had
already handed out are never reused under the epoch the office knows them by.

Office: one file, a tar holding the database (``pg_dump`` in its custom format, checked by
listing it) and the office's QR signing key, so that one ``gatehouse restore FILE`` brings
back both: without its key a restored office would print passes no gate can read, and every
pass already printed would have to be printed again. The file holds a private key: it is
made 0600 and is to be kept like one. The key is put back (0600) only into a data_dir that
has none or the same one; a different key there is replaced only when asked
(``--replace-key``), and is then kept beside it. Restored with ``pg_restore --clean``; a bare
``pg_dump`` file from before the key was carried is still restored (the database alone).
Gates notice an office that lost records they had sent (it answers a lower high-water mark)
and send them again.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge import db, outbox
from edge.errors import DomainError
from sync.qr import KEY_FILE, Signer


def backup_edge(db_path: Path, target: Path) -> int:
    """Copy the live database to ``target``; the number of pages, or DomainError."""
    try:  # made owner-only before SQLite writes into it: it holds what the database holds
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        raise DomainError(f"{target} exists already; choose a new file") from None
    src = db.connect(db_path)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
        check = dst.execute("PRAGMA integrity_check").fetchone()[0]
        pages = dst.execute("PRAGMA page_count").fetchone()[0]
    finally:
        dst.close()
        src.close()
    if check != "ok":
        target.unlink()
        raise DomainError(f"the copy failed its integrity check: {check}")
    return int(pages)


def restore_edge(source: Path, db_path: Path) -> int:
    """Put a backup in place (the service must be stopped); returns the new epoch.

    Refused while the service runs: it would keep writing into the files this replaces,
    and the restore would be silently undone."""
    if not source.is_file():
        raise DomainError(f"{source} is not a file")
    try:
        held = db.hold(db_path)
    except db.InUse:
        raise DomainError(
            f"the service is running on {db_path}: stop it first "
            "(systemctl stop gatehouse-edge), then restore"
        ) from None
    try:
        return _restore_edge(source, db_path)
    finally:
        db.release(held)


def _restore_edge(source: Path, db_path: Path) -> int:
    probe = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        check = probe.execute("PRAGMA integrity_check").fetchone()[0]
    except sqlite3.DatabaseError as e:
        raise DomainError(f"{source} is not a Gatehouse database: {e}") from None
    finally:
        probe.close()
    if check != "ok":
        raise DomainError(f"{source} failed its integrity check: {check}")
    for suffix in ("-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(source, db_path)
    db.migrate(db_path)
    conn = db.connect(db_path)
    try:
        old = db.get_meta(conn, "epoch")
        first = outbox.next_seq(conn)  # (not max(seq)+1: pruned rows' seqs are used up)
        conn.execute("BEGIN IMMEDIATE")
        epoch = db.new_epoch(conn)
        db.set_meta(conn, f"epoch_base:{epoch}", str(first))
        db.set_meta(conn, "restored_from_epoch", str(old))
        conn.execute("COMMIT")
    finally:
        conn.close()
    return epoch


OFFICE_FORMAT = "gatehouse-office-backup"
MANIFEST, DUMP, KEY = "gatehouse-office-backup.json", "office.dump", "office_ed25519.key"


def backup_office(database_url: str, target: Path, data_dir: Path) -> str | None:
    """The office's database and signing key in one tar at ``target`` (0600); the key id
    it carries, or None when the office has no key yet (the database alone)."""
    if target.exists():
        raise DomainError(f"{target} exists already; choose a new file")
    signer = Signer.from_data_dir(data_dir) if (data_dir / KEY_FILE).exists() else None
    kid = signer.kid if signer else None
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".office-backup-") as tmp:
        dump = Path(tmp) / DUMP
        _run(["pg_dump", "--format=custom", f"--file={dump}", database_url], "pg_dump")
        _run(["pg_restore", "--list", str(dump)], "the dump's check")
        manifest = {"format": OFFICE_FORMAT, "version": 1, "dump": DUMP,
                    "key": KEY if signer else None, "kid": kid}  # fmt: skip
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f, tarfile.open(fileobj=f, mode="w") as tar:
                _put(tar, MANIFEST, json.dumps(manifest, indent=1).encode() + b"\n")
                info = tar.gettarinfo(str(dump), arcname=DUMP)
                info.mode, info.uid, info.gid, info.uname, info.gname = 0o600, 0, 0, "", ""
                with dump.open("rb") as data:
                    tar.addfile(info, data)
                if signer is not None:
                    _put(tar, KEY, signer.private_hex.encode() + b"\n")
        except BaseException:
            target.unlink(missing_ok=True)
            raise
    return kid


def _put(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o600
    tar.addfile(info, io.BytesIO(data))


def restore_office(
    source: Path, database_url: str, data_dir: Path, replace_key: bool = False
) -> tuple[str, str | None]:
    """Put an office backup back: the database, then the signing key. Answers what became
    of the key (restored, kept: the same one was there, replaced, none: the backup has none)
    and its id. A different key in ``data_dir`` is refused before anything is touched,
    unless ``replace_key``: then it is kept beside, as ``office_ed25519.key.<kid>``."""
    if not source.is_file():
        raise DomainError(f"{source} is not a file")
    if not tarfile.is_tarfile(source):  # a bare pg_dump, from before the key was carried
        _pg_restore(source, database_url)
        return "none", None
    with tarfile.open(source, "r:") as tar, tempfile.TemporaryDirectory() as tmp:
        manifest = _member(tar, MANIFEST, source)
        try:
            ok = json.loads(manifest or b"null").get("format") == OFFICE_FORMAT
        except (ValueError, AttributeError):
            ok = False
        if not ok:
            raise DomainError(f"{source} is not a Gatehouse office backup")
        key_text = _member(tar, KEY, source)
        signer: Signer | None = None
        if key_text is not None:
            try:
                key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(key_text.decode()))
            except ValueError:
                raise DomainError(f"{source}: its signing key is damaged") from None
            signer = Signer(key)
        here = data_dir / KEY_FILE
        state, held = "none" if signer is None else "restored", None
        if signer is not None and here.exists():
            held = Signer.from_data_dir(data_dir)
            if held.kid == signer.kid:
                state = "kept"
            elif not replace_key:
                raise DomainError(
                    f"{here} holds a different signing key ({held.kid}) from the backup's "
                    f"({signer.kid}): nothing restored; to put the backup's in its place "
                    "(the current one kept beside it), add --replace-key"
                )
            else:
                state = "replaced"
        dump = Path(tmp) / DUMP
        info = tar.getmember(DUMP) if DUMP in tar.getnames() else None
        extracted = tar.extractfile(info) if info is not None and info.isfile() else None
        if extracted is None:
            raise DomainError(f"{source} holds no database dump")
        with extracted, dump.open("wb") as out:
            shutil.copyfileobj(extracted, out)
        _pg_restore(dump, database_url)
    if signer is not None and state != "kept":
        _place_key(here, signer, held.kid if held else None)
    return state, None if signer is None else signer.kid


def _member(tar: tarfile.TarFile, name: str, source: Path) -> bytes | None:
    """A small file of the backup (the manifest, the key), or None when it has none."""
    try:
        info = tar.getmember(name)
    except KeyError:
        return None
    if not info.isfile() or info.size > 65536:
        raise DomainError(f"{source}: {name} is not what a Gatehouse office backup holds")
    extracted = tar.extractfile(info)
    assert extracted is not None  # a regular file
    with extracted:
        return extracted.read()


def _place_key(path: Path, signer: Signer, replaced: str | None) -> None:
    """The key, 0600, in its place; a key it replaces (``replaced``: its id) is kept beside
    it under its id."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".office_ed25519.")  # 0600
    try:
        with os.fdopen(fd, "w") as f:
            f.write(signer.private_hex)
        if replaced is not None:
            os.replace(path, path.with_name(f"{path.name}.{replaced}"))
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # never over a key that appeared meanwhile
            os.unlink(tmp)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


_TABLE = re.compile(r"^\d+; \d+ \d+ TABLE ([a-z_][a-z0-9_]*) ([a-z_][a-z0-9_]*) ", re.M)


def _pg_restore(source: Path, database_url: str) -> None:
    """``pg_restore --clean`` over the office's database, the dump's tables dropped first
    (CASCADE): --clean alone cannot drop a partition's inherited primary key (the events
    are partitioned by month) and ends in errors."""
    listed = _run(["pg_restore", "--list", str(source)], "pg_restore --list")
    drops = "; ".join(f'DROP TABLE IF EXISTS "{schema}"."{table}" CASCADE'
                      for schema, table in _TABLE.findall(listed))  # fmt: skip
    if drops:  # one statement list: one transaction
        _run(["psql", "--no-psqlrc", "--quiet", "--set=ON_ERROR_STOP=1",
              f"--dbname={database_url}", f"--command={drops}"], "dropping the tables")  # fmt: skip
    _run(["pg_restore", "--clean", "--if-exists", "--no-owner", f"--dbname={database_url}",
          str(source)], "pg_restore")  # fmt: skip


def _run(cmd: list[str], what: str) -> str:
    if shutil.which(cmd[0]) is None:
        raise DomainError(f"{cmd[0]} is not installed (Debian package postgresql-client)")
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise DomainError(f"{what} failed: {done.stderr.strip().splitlines()[-1:]}")
    return done.stdout
