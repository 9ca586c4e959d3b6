"""Backups: online, consistent, checked, whole; a restore starts a new epoch.

Edge: one tar with the database (SQLite's online backup API copies the live database, WAL
and all, page by page while the service runs, then ``PRAGMA integrity_check``), the ID-number
key, the photos and, if asked, the snapshots, with a manifest of every file's SHA-256. A
restore checks the whole archive before it touches anything, puts the database in place and
gives the node a new epoch, so sequence numbers the lost database had already handed out are
never reused under the epoch the office knows them by; then the key and files go into the
config's data_dir, which may be on another path than the backup's.

Office: one file, a tar holding the database (``pg_dump`` in its custom format, checked by
listing it), the office's QR signing key and its ID-number key, so that one ``gatehouse
restore FILE`` brings back all three: without its key a restored office would print passes
no gate can read, and every pass already printed would have to be printed again. The file
holds a private key: it is made 0600 and is to be kept like one. A key is put back (0600)
only into a data_dir that has none or the same one; a different key there is replaced only
when asked (``--replace-key``), and is then kept beside it. Restored with ``pg_restore
--clean``; a bare ``pg_dump`` file from before the key was carried is still restored (the
database alone). Gates notice an office that lost records they had sent (it answers a lower
high-water mark) and send them again.
"""

from __future__ import annotations

import functools
import hashlib
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
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge import db, outbox
from edge.errors import DomainError
from sync.qr import KEY_FILE, Signer

EDGE_FORMAT, EDGE_MANIFEST = "gatehouse-edge-backup", "gatehouse-edge-backup.json"
DATABASE = "edge.db"
# what a node needs besides its database, under its data_dir: the ID-number key (without it
# no restored ID hash matches again) and the holders' photos; snapshots when asked
KEPT = ("keys", "photos")


def backup_edge(db_path: Path, data_dir: Path, target: Path, snapshots: bool = False) -> dict:
    """One tar at ``target`` (0600): the database (SQLite's online backup, integrity-checked),
    the keys, the photos and, if asked, the snapshots, with a manifest of every file's size
    and SHA-256 (written last). Returns the manifest."""
    try:  # made owner-only before anything goes in: it holds what the database holds
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise DomainError(f"{target} exists already; choose a new file") from None
    try:
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=".edge-backup-") as tmp:
            copy = Path(tmp) / DATABASE
            pages = _online_copy(db_path, copy)
            files: dict[str, dict[str, Any]] = {}
            with os.fdopen(fd, "wb") as f, tarfile.open(fileobj=f, mode="w") as tar:
                files[DATABASE] = _add(tar, DATABASE, copy)
                for folder in (*KEPT, *(("snapshots",) if snapshots else ())):
                    for path in sorted((data_dir / folder).rglob("*")):
                        if path.is_file() and not path.name.startswith("."):
                            name = path.relative_to(data_dir).as_posix()
                            files[name] = _add(tar, name, path)
                manifest = {
                    "format": EDGE_FORMAT, "version": 1, "pages": pages,
                    "snapshots_dir": str(data_dir / "snapshots") if snapshots else None,
                    "files": files,
                }  # fmt: skip
                _put(tar, EDGE_MANIFEST, json.dumps(manifest, indent=1).encode() + b"\n")
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return manifest


def _online_copy(db_path: Path, target: Path) -> int:
    """The live database copied page by page while the service writes; its pages."""
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
        raise DomainError(f"the copy failed its integrity check: {check}")
    return int(pages)


def _add(tar: tarfile.TarFile, name: str, path: Path) -> dict[str, Any]:
    """One file into the archive, hashed as it is read (the bytes hashed are the bytes kept)."""
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as f, tempfile.SpooledTemporaryFile(8 << 20) as held:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
            held.write(chunk)
            size += len(chunk)
        held.seek(0)
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = size, 0o600, int(path.stat().st_mtime)
        tar.addfile(info, held)
    return {"size": size, "sha256": digest.hexdigest()}


def restore_edge(source: Path, db_path: Path, data_dir: Path, replace_key: bool = False
                 ) -> dict[str, Any]:  # fmt: skip
    """Put a backup in place (the service must be stopped); what was restored, with the new
    epoch. The archive is checked whole (manifest, every checksum, the database's integrity)
    before anything is touched. A different ID-number key in ``data_dir`` is refused unless
    ``replace_key`` (then kept beside it). A bare database file (an older backup) is still
    restored, the database alone.

    Refused while the service runs: it would keep writing into the files this replaces,
    and the restore would be silently undone."""
    if not source.is_file():
        raise DomainError(f"{source} is not a file")
    with tempfile.TemporaryDirectory(dir=data_dir.parent if data_dir.parent.is_dir() else None,
                                     prefix=".edge-restore-") as tmp:  # fmt: skip
        unpacked = Path(tmp)
        manifest = _unpack_edge(source, unpacked) if tarfile.is_tarfile(source) else None
        database = unpacked / DATABASE if manifest else source
        _check_database(database, source)
        key_state = _key_state(unpacked, data_dir, replace_key)
        try:
            held = db.hold(db_path)
        except db.InUse:
            raise DomainError(
                f"the service is running on {db_path}: stop it first "
                "(systemctl stop gatehouse-edge), then restore"
            ) from None
        try:
            epoch = _restore_edge(database, db_path)
            placed = _place_files(unpacked, data_dir, manifest) if manifest else 0
            if manifest and manifest.get("snapshots_dir"):
                _move_snapshots(db_path, manifest["snapshots_dir"], data_dir / "snapshots")
        finally:
            db.release(held)
    return {"epoch": epoch, "key": key_state, "files": placed}


def _unpack_edge(source: Path, into: Path) -> dict[str, Any]:
    """The archive's files under ``into``, each checked against the manifest; the manifest,
    or DomainError naming what is wrong (nothing outside ``into`` is written)."""
    with tarfile.open(source, "r:") as tar:
        raw = _member(tar, EDGE_MANIFEST, source, limit=64 << 20)
        try:
            manifest = json.loads(raw or b"null")
            files = manifest["files"] if manifest.get("format") == EDGE_FORMAT else None
        except (ValueError, AttributeError, KeyError, TypeError):
            files = None
        if not isinstance(files, dict) or DATABASE not in files:
            raise DomainError(f"{source} is not a Gatehouse gate backup (no manifest)")
        seen = set()
        for info in tar:
            if info.name == EDGE_MANIFEST:
                continue
            want = files.get(info.name)
            if want is None or not info.isfile() or not _safe(info.name):
                raise DomainError(f"{source}: {info.name!r} is not in its manifest")
            out = into / info.name
            out.parent.mkdir(parents=True, exist_ok=True)
            digest = hashlib.sha256()
            extracted = tar.extractfile(info)
            assert extracted is not None  # a regular file
            with extracted, out.open("wb") as f:
                for chunk in iter(functools.partial(extracted.read, 1 << 20), b""):
                    digest.update(chunk)
                    f.write(chunk)
            if digest.hexdigest() != want.get("sha256"):
                raise DomainError(f"{source}: {info.name} is damaged (its checksum differs)")
            seen.add(info.name)
        missing = sorted(set(files) - seen)
        if missing:
            raise DomainError(f"{source}: {len(missing)} files missing, {missing[0]} first")
    return manifest


def _safe(name: str) -> bool:
    parts = Path(name).parts
    return (
        bool(parts)
        and not Path(name).is_absolute()
        and ".." not in parts
        and (name == DATABASE or parts[0] in (*KEPT, "snapshots"))
    )


def _check_database(path: Path, source: Path) -> None:
    probe = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        check = probe.execute("PRAGMA integrity_check").fetchone()[0]
    except sqlite3.DatabaseError as e:
        raise DomainError(f"{source} is not a Gatehouse database: {e}") from None
    finally:
        probe.close()
    if check != "ok":
        raise DomainError(f"{source} failed its integrity check: {check}")


ID_KEY = Path("keys") / "id_hash.key"


def _key_state(unpacked: Path, data_dir: Path, replace_key: bool) -> str:
    """What becomes of the ID-number key, decided before anything is touched."""
    theirs, ours = unpacked / ID_KEY, data_dir / ID_KEY
    if not theirs.is_file():
        return "none"
    if not ours.exists():
        return "restored"
    if ours.read_bytes() == theirs.read_bytes():
        return "kept"
    if not replace_key:
        raise DomainError(
            f"{ours} holds a different ID-number key from the backup's: nothing restored; "
            "the restored records' ID numbers match only under the backup's key: add "
            "--replace-key to put it in place (the current one kept beside it)"
        )
    return "replaced"


def _place_files(unpacked: Path, data_dir: Path, manifest: dict[str, Any]) -> int:
    """Keys, photos and snapshots into ``data_dir`` (0600, folders 0700); a key it replaces
    is kept beside it, a photo already there (the same bytes, by its name) is left."""
    placed = 0
    for name in sorted(manifest["files"]):
        if name == DATABASE:
            continue
        src, dst = unpacked / name, data_dir / name
        dst.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if dst.exists() and Path(name) == ID_KEY and dst.read_bytes() != src.read_bytes():
            os.replace(dst, dst.with_name(f"{dst.name}.replaced-{int(dst.stat().st_mtime)}"))
        elif dst.exists() and Path(name).parts[0] != "keys":
            continue
        src.chmod(0o600)
        shutil.move(src, dst)  # (a copy when the backup was unpacked on another disk)
        placed += 1
    return placed


def _move_snapshots(db_path: Path, old: str, new: Path) -> None:
    """Snapshot records name their files by path: point them at this data_dir's copy."""
    if old == str(new):
        return
    conn = db.connect(db_path)
    try:
        conn.execute(
            "UPDATE snapshots SET path = ? || substr(path, ?) WHERE substr(path, 1, ?) = ?",
            (str(new), len(old) + 1, len(old) + 1, f"{old}/"),
        )
    finally:
        conn.close()


def _restore_edge(source: Path, db_path: Path) -> int:
    for suffix in ("-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    db_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    shutil.copyfile(source, db_path)
    db.private(db_path)
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
                if (data_dir / ID_KEY).is_file():  # the office's ID-number hashes match by it
                    _put(tar, ID_KEY.as_posix(), (data_dir / ID_KEY).read_bytes())
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
        id_key = _member(tar, ID_KEY.as_posix(), source)
        if id_key is not None:
            (Path(tmp) / "keys").mkdir()
            (Path(tmp) / ID_KEY).write_bytes(id_key)
            id_state = _key_state(Path(tmp), data_dir, replace_key)
        dump = Path(tmp) / DUMP
        info = tar.getmember(DUMP) if DUMP in tar.getnames() else None
        extracted = tar.extractfile(info) if info is not None and info.isfile() else None
        if extracted is None:
            raise DomainError(f"{source} holds no database dump")
        with extracted, dump.open("wb") as out:
            shutil.copyfileobj(extracted, out)
        _pg_restore(dump, database_url)
        if id_key is not None and id_state != "kept":
            _place_files(Path(tmp), data_dir, {"files": {ID_KEY.as_posix(): {}}})
    if signer is not None and state != "kept":
        _place_key(here, signer, held.kid if held else None)
    return state, None if signer is None else signer.kid


def _member(tar: tarfile.TarFile, name: str, source: Path, limit: int = 65536) -> bytes | None:
    """A small file of the backup (the manifest, the key), or None when it has none."""
    try:
        info = tar.getmember(name)
    except KeyError:
        return None
    if not info.isfile() or info.size > limit:
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
