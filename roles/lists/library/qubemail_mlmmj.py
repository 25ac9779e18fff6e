#!/usr/bin/python
"""Converge every mlmmj 1.3.0 list of a qubemail host in one in-process pass."""

DOCUMENTATION = r"""
module: qubemail_mlmmj
short_description: Manage all qubemail mailing lists (mlmmj 1.3.0 list dirs, control files, members)
description:
  - Creates each list directory as C(mlmmj-make-ml) would, writes the managed control files and
    subscribes/unsubscribes inventory members with C(mlmmj-sub)/C(mlmmj-unsub) (run as root; the tools
    setuid() to the list owner). Tools are spawned only for actual changes; subscribers are read from disk.
  - Only addresses recorded as managed (C(state_dir/NAME.managed)) are ever unsubscribed, so people who
    subscribed themselves by e-mail survive. Members in C(digesters.d)/C(nomailsubs.d) count as subscribed.
  - Lists dropped from O(lists) are reported in RV(removed); their directories are kept unless O(purge_removed).
  - With O(archive_readers) instead of O(lists), it subscribes each reader to the archive folders they may read
    (C(doveadm mailbox list -s), then C(doveadm mailbox subscribe) for the missing ones only). WebMail shows
    subscribed folders only. Subscriptions are never removed here. Run it after Dovecot serves the archive
    namespace.
options:
  lists:
    description: Validated list dicts with C(name), C(address), C(domain), C(description), C(members), C(moderators),
      C(owners), C(posting) (members|any|moderated), C(subscription) (confirm|open|closed), C(max_message_size),
      C(reply_to_list), C(subject_prefix), C(archive). Required unless O(archive_readers) is given.
    type: list
    elements: dict
  archive_readers:
    description: "Output of the qubemail_list_acl filter: dicts with C(mailbox) (an archive folder) and C(users)
      (the local users who may read it). Mutually exclusive with O(lists)."
    type: list
    elements: dict
  doveadm: {description: Path of doveadm (O(archive_readers) only)., type: path, default: /usr/bin/doveadm}
  spool: {description: mlmmj spool holding one directory per list., type: path, default: /var/spool/mlmmj}
  state_dir: {description: "Module state (lists.json, NAME.managed).", type: path, default: /var/lib/qubemail/lists-state}
  owner: {description: User and group owning the list directories., type: str, default: mlmmj}
  smtp_port: {description: Loopback smtpd port mlmmj re-injects to (control/smtpport)., type: int, default: 10025}
  purge_removed: {description: Delete the spool directory and state of removed lists., type: bool, default: false}
  mlmmj_bin: {description: Directory holding mlmmj-sub and mlmmj-unsub., type: path, default: /usr/bin}
attributes:
  check_mode: {support: full}
  diff_mode: {support: full}
"""

EXAMPLES = r"""
- name: Converge mailing lists
  qubemail_mlmmj:
    lists: "{{ lists_validated }}"  # output of the lists validation filter
    purge_removed: false
  register: mlmmj_result

- name: Subscribe the readers to their archive folders
  qubemail_mlmmj:
    archive_readers: "{{ lists_validated | qubemail_list_acl(mlmmj_result.subscribers) }}"
"""

RETURN = r"""
lists: {description: Names of the managed lists., returned: O(lists), type: list, elements: str}
added: {description: NAME -> addresses subscribed this run., returned: O(lists), type: dict}
removed_members: {description: NAME -> addresses unsubscribed this run., returned: O(lists), type: dict}
removed: {description: Lists dropped from the inventory (or purged) this run., returned: O(lists), type: list}
purged: {description: Lists whose spool directory and state were deleted this run., returned: O(lists), type: list}
subscribers: {description: "NAME -> sorted list of all subscribers after the run (normal, digest, nomail;
  managed or self-subscribed).", returned: O(lists), type: dict}
subscribed: {description: "User -> archive folders subscribed this run (in check mode: that would be).",
  returned: O(archive_readers), type: dict}
"""

import contextlib
import grp
import json
import os
import pwd
import re
import shutil
import stat
import tempfile
from email.header import Header

from ansible.module_utils.basic import AnsibleModule

LIST_DIRS = ("incoming", "queue", "queue/discarded", "archive", "text", "subconf", "unsubconf", "bounce",
             "control", "moderation", "subscribers.d", "digesters.d", "requeue", "nomailsubs.d")
SUB_DIRS = ("subscribers.d", "digesters.d", "nomailsubs.d")
LIST_HEADERS = ("List-Id:", "List-Post:", "List-Help:", "List-Subscribe:", "List-Unsubscribe:",
                "List-Owner:", "Precedence:")
#: Set by the list's alias pipe (files/qubemail-list-receive) on a post over the size limit.
OVERSIZE_HEADER = "X-Qubemail-Oversize:"
NAME_RE = re.compile(r"^[a-z0-9_-]+$")
ADDR_RE = re.compile(r"^[^@\s]+@[^@\s]+$")
#: The values a validated list may have (the inventory filter checks them too; see control_files).
POSTING = ("members", "any", "moderated")
SUBSCRIPTION = ("confirm", "open", "closed")
ATEXT = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~ ")
#: Options other than ``lists``: (Ansible type, default), for main() and sync().
OPTIONS = {"spool": ("path", "/var/spool/mlmmj"), "state_dir": ("path", "/var/lib/qubemail/lists-state"),
           "owner": ("str", "mlmmj"), "smtp_port": ("int", 10025), "purge_removed": ("bool", False),
           "mlmmj_bin": ("path", "/usr/bin")}
#: doveadm's exit code for a user that does not exist (EX_NOUSER).
DOVEADM_NOUSER = 67
DOVEADM = "/usr/bin/doveadm"
DIR_MODE = 0o700  # mlmmj-make-ml dirs; files mlmmj writes are 0600
FILE_MODE = 0o644


class MlmmjError(Exception):
    """A failure reported to Ansible as fail_json(msg)."""


def _lines(items):
    return "".join("%s\n" % item for item in items)


def _phrase(text):
    """RFC 5322 display phrase for List-Id: atoms as-is, else quoted, non-ASCII RFC 2047-encoded."""
    text = " ".join(str(text).split())
    if not text.isascii():
        return Header(text, "utf-8").encode(maxlinelen=0)
    if set(text) <= ATEXT:
        return text
    return '"%s"' % text.replace("\\", "\\\\").replace('"', '\\"')


def _addresses(values, what):
    out = sorted({str(v).strip().lower() for v in values or []})
    bad = [a for a in out if not ADDR_RE.match(a)]
    if bad:
        raise MlmmjError("%s: invalid address(es) %s" % (what, ", ".join(bad)))
    return out


def control_files(lst, smtp_port):
    """Return {control file: content, or None when it must be absent} for every managed file."""
    name, address = lst["name"], str(lst["address"]).lower()
    local, domain = address.rsplit("@", 1)
    posting, subscription = lst.get("posting", "members"), lst.get("subscription", "confirm")
    reply_to, size, prefix = bool(lst.get("reply_to_list")), int(lst.get("max_message_size") or 0), \
        str(lst.get("subject_prefix") or "")
    # Fail closed: an unknown value would leave every policy flag off, i.e. an open list.
    if posting not in POSTING or subscription not in SUBSCRIPTION \
            or "\n" in prefix or "\r" in prefix:
        raise MlmmjError("list %s: invalid posting %r, subscription %r or subject_prefix %r"
                         % (name, posting, subscription, prefix))
    flag = {True: "", False: None}  # boolean control files: empty when on, absent when off
    mailto = "<mailto:%s%%s@%s>" % (local, domain)
    headers = ["List-Id: %s <%s.%s>" % (_phrase(lst.get("description") or name), local, domain),
               "List-Post: " + mailto % "", "List-Help: " + mailto % "+help",
               "List-Subscribe: " + mailto % "+subscribe", "List-Unsubscribe: " + mailto % "+unsubscribe",
               "List-Owner: " + mailto % "+owner", "Precedence: list", "X-Loop: " + address]
    if reply_to:
        headers.append("Reply-To: " + address)
    dotted = lambda s: s.replace(".", r"\.")  # noqa: E731  (POSIX ERE, case-insensitive in mlmmj)
    owners = _addresses(lst.get("owners"), "list %s owners" % name)
    # No notice ever goes to a poster: mlmmj's refusals quote the post to the
    # From: address, which anyone can forge (docs/DESIGN.md "Mailing lists").
    # A post that is not for the list as it stands is held for the moderators,
    # or for the owners when the list has none.
    access = ["discard ^X-Loop: " + dotted(address),
              "discard ^List-Id:.*<%s\\.%s>" % (dotted(local), dotted(domain))]
    if size > 0:  # mlmmj's own maxmailsize would mail the refusal to From:
        access.append("moderate ^" + OVERSIZE_HEADER)
    return {
        "listaddress": _lines([address]),
        "owner": _lines(owners),
        "moderators": _lines(_addresses(lst.get("moderators"), "list %s moderators" % name) or owners),
        "moderated": flag[posting == "moderated"],
        "subonlypost": flag[posting == "members"],
        "modnonsubposts": flag[posting == "members"],
        "nosubconfirm": flag[subscription == "open"],
        "closedlistsub": flag[subscription == "closed"],
        "maxmailsize": None,
        "prefix": _lines([prefix]) if prefix else None,
        "tocc": "", "noget": "", "nolistsubsemail": "",
        # Archive on: mlmmj-send keeps each sent post as archive/N, which
        # files/qubemail-list-archive files in the list's IMAP folder.
        "noarchive": flag[not lst.get("archive")],
        "smtpport": _lines([int(smtp_port)]),
        # Postfix does the VERP (XVERP): one SMTP transaction per 100
        # recipients instead of one per recipient, same bounce addresses.
        "verp": _lines(["postfix"]),
        # OVERSIZE_HEADER stays: it tells the moderators why a post was held.
        "delheaders": _lines(LIST_HEADERS + (("Reply-To:",) if reply_to else ())),
        "customheaders": _lines(headers),
        "access": _lines(access + ["allow"]),
    }


def read_subscribers(listdir):
    """Union of subscribers.d, digesters.d and nomailsubs.d (files named by an address's first byte)."""
    found = set()
    for sub in SUB_DIRS:
        path = os.path.join(listdir, sub)
        for entry in (os.scandir(path) if os.path.isdir(path) else ()):  # one-byte names only: skips .X.lock and rewrite temp files
            if len(os.fsencode(entry.name)) == 1 and entry.is_file(follow_symlinks=False):
                with open(entry.path, encoding="utf-8", errors="surrogateescape") as handle:
                    found.update(line.strip().lower() for line in handle if line.strip())
    return found


def owner_ids(owner):
    """(uid, gid) of user *owner* and the group of the same name (else its primary group), or None."""
    try:
        pw = pwd.getpwnam(owner)
    except KeyError:
        return None
    try:
        return pw.pw_uid, grp.getgrnam(owner).gr_gid
    except KeyError:
        return pw.pw_uid, pw.pw_gid


def _load_json(path, default):
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        return default
    except ValueError as exc:
        raise MlmmjError("corrupt state file %s: %s" % (path, exc))


class Syncer:
    """Per-run context: options, injected run/chown, owner ids and the diff/changed accumulators."""
    def __init__(self, params, run, check_mode, chown, ids):
        self.p, self.run, self.check, self.chown, self.ids = params, run, check_mode, chown, ids
        self.changed = False
        self.before, self.after = [], []

    def _attrs(self, st, mode):
        """Describe attributes that differ from (mode, owner), or '' when they match."""
        bad = []
        if mode is not None and stat.S_IMODE(st.st_mode) != mode:
            bad.append("mode %04o" % stat.S_IMODE(st.st_mode))
        if self.ids is not None and (st.st_uid, st.st_gid) != self.ids:
            bad.append("owner %d:%d" % (st.st_uid, st.st_gid))
        return ", ".join(bad)

    def _set_attrs(self, path, mode):
        if not self.check:
            if mode is not None:
                os.chmod(path, mode)
            self.chown(path, *self.ids)

    def _fix_attrs(self, path, st, mode, label, out):
        bad = self._attrs(st, mode)
        if bad:
            want = ["mode %04o" % mode] if mode is not None else []
            want += ["owner %d:%d" % self.ids] if self.ids else []
            out.append((label + ": " + bad, label + ": " + ", ".join(want)))
            self._set_attrs(path, mode)

    def ensure_dir(self, path, label, out):
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            out.append((label + ": absent", label + ": created"))
            if not self.check:
                os.mkdir(path, DIR_MODE)
                self._set_attrs(path, DIR_MODE)
            return
        if not stat.S_ISDIR(st.st_mode):
            raise MlmmjError("%s exists and is not a directory" % path)
        self._fix_attrs(path, st, DIR_MODE, label, out)

    def ensure_file(self, path, label, content, out, mode=FILE_MODE):
        """content None = must be absent; mode None = keep mode (only ensure existence and owner)."""
        try:
            st = os.lstat(path)
            with open(path, "rb") as handle:
                old = handle.read().decode("utf-8", "replace")
        except FileNotFoundError:
            st = old = None
        if content is None:
            if old is not None:
                out.append((label + ":\n" + _indent(old), label + ": (absent)"))
                if not self.check:
                    os.unlink(path)
            return
        if old is None or (old != content and mode is not None):
            out.append((label + (": (absent)" if old is None else ":\n" + _indent(old)),
                        label + ":\n" + _indent(content)))
            if not self.check:
                self.write_atomic(path, content, mode if mode is not None else 0o600, self.ids)
            return
        self._fix_attrs(path, st, mode, label, out)

    def write_atomic(self, path, content, mode, ids=None):
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".qubemail.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(content)
            os.chmod(tmp, mode)
            if ids is not None:
                self.chown(tmp, *ids)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise

    def save_state(self, name, data):
        if not self.check:
            os.makedirs(self.p["state_dir"], mode=0o700, exist_ok=True)
            self.write_atomic(os.path.join(self.p["state_dir"], name), json.dumps(data, indent=1) + "\n", 0o600)

    def sync_list(self, lst, result):
        name = lst["name"]
        listdir = os.path.join(self.p["spool"], name)
        out = []
        if not self.check and not os.path.isdir(self.p["spool"]):
            os.makedirs(self.p["spool"], mode=0o755)
            self.chown(self.p["spool"], *self.ids)
        new = not os.path.lexists(listdir)  # check mode: missing paths below simply report as absent
        self.ensure_dir(listdir, "directory", out)
        for sub in LIST_DIRS:
            self.ensure_dir(os.path.join(listdir, sub), "dir " + sub, out)
        if new:
            out = [("directory: absent", "directory: created with %s" % " ".join(LIST_DIRS))]
        self.ensure_file(os.path.join(listdir, "index"), "index", "", out, mode=None)
        for fname, content in control_files(lst, self.p["smtp_port"]).items():
            self.ensure_file(os.path.join(listdir, "control", fname), "control/" + fname, content, out)
        out += self.sync_members(lst, listdir, result)
        if out:
            self.changed = True
            self.before += ["list %s (%s):" % (name, listdir)] + ["  " + before for before, _ in out]
            self.after += ["list %s (%s):" % (name, listdir)] + ["  " + after for _, after in out]

    def sync_members(self, lst, listdir, result):
        name = lst["name"]
        desired = set(_addresses(lst.get("members"), "list %s members" % name))
        current = read_subscribers(listdir)
        state_file = "%s.managed" % name
        managed = set(_load_json(os.path.join(self.p["state_dir"], state_file), []))
        to_add, to_remove = sorted(desired - current), sorted((managed - desired) & current)
        done_add, done_remove = [], []
        try:
            for tool, addrs, done in (("mlmmj-sub", to_add, done_add), ("mlmmj-unsub", to_remove, done_remove)):
                for addr in addrs:
                    if not self.check:
                        argv = [os.path.join(self.p["mlmmj_bin"], tool), "-L", listdir, "-a", addr]
                        argv += ["-f", "-q", "-s"] if tool == "mlmmj-sub" else ["-q", "-s"]
                        rc, out, err = self.run(argv)
                        if rc != 0:
                            raise MlmmjError("%s failed (rc=%s): %s" % (" ".join(argv), rc, (err or out).strip()))
                    done.append(addr)
        except MlmmjError:
            self.save_state(state_file, sorted((managed | set(done_add)) - set(done_remove)))
            raise
        finally:
            result["added"][name], result["removed_members"][name] = done_add, done_remove
        after = (current | set(to_add)) - set(to_remove)
        if (to_add or to_remove) and not self.check:
            after = read_subscribers(listdir)
            lost = [a for a in to_add if a not in after] + [a for a in to_remove if a in after]
            if lost:
                raise MlmmjError("list %s: mlmmj-sub/unsub exited 0 but did not change %s" % (name, ", ".join(lost)))
        result["subscribers"][name] = sorted(after)
        if desired != managed:
            self.save_state(state_file, sorted(desired))
        out = []
        for addr in sorted(set(to_add) | set(to_remove) | (desired ^ managed)):
            was = ("subscribed" if addr in current else "not subscribed") + (", managed" if addr in managed else "")
            now = ("subscribed" if addr in after else "not subscribed") + (", managed" if addr in desired else "")
            out.append(("member %s: %s" % (addr, was), "member %s: %s" % (addr, now)))
        return out

    def sync_removed(self, names, result):
        state = _load_json(os.path.join(self.p["state_dir"], "lists.json"), {})
        prev_active, prev_kept = set(state.get("lists", [])), set(state.get("kept", []))
        kept = set()
        for name in sorted((prev_active | prev_kept) - set(names)):
            if not NAME_RE.match(name):
                continue
            listdir = os.path.join(self.p["spool"], name)
            if self.p["purge_removed"]:
                result["removed"].append(name)
                result["purged"].append(name)
                self._removed_diff(name, "removed" if name in prev_active else "removed, directory kept",
                                   "purged (directory and state deleted)")
                if not self.check:
                    if os.path.isdir(listdir) and not os.path.islink(listdir):
                        shutil.rmtree(listdir)
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(os.path.join(self.p["state_dir"], "%s.managed" % name))
            else:
                kept.add(name)
                if name in prev_active:
                    result["removed"].append(name)
                    self._removed_diff(name, "active", "removed, directory kept (%s)" % listdir)
        new_state = {"lists": sorted(set(names)), "kept": sorted(kept)}
        if new_state != {"lists": sorted(prev_active), "kept": sorted(prev_kept)}:
            self.changed = True
            self.save_state("lists.json", new_state)

    def _removed_diff(self, name, before, after):
        self.changed = True
        self.before.append("list %s: %s" % (name, before))
        self.after.append("list %s: %s" % (name, after))


def _indent(text):
    return "\n".join("    " + line for line in text.splitlines()) if text else "    (empty)"


def sync(params, run, check_mode=False, chown=os.chown):
    """Converge all lists; run(argv) -> (rc, stdout, stderr) executes mlmmj tools, chown(path, uid, gid)."""
    params = dict({name: default for name, (_, default) in OPTIONS.items()}, **params)
    ids = owner_ids(params["owner"])
    if ids is None and not check_mode:
        raise MlmmjError("list owner user %r does not exist" % params["owner"])
    names = [lst["name"] for lst in params["lists"]]
    bad = [str(n) for n in names if not NAME_RE.match(str(n))] + sorted({n for n in names if names.count(n) > 1})
    if bad:
        raise MlmmjError("invalid or duplicate list names: %s" % ", ".join(bad))
    result = {"lists": names, "added": {}, "removed_members": {}, "removed": [], "purged": [], "subscribers": {}}
    syncer = Syncer(params, run, check_mode, chown, ids)
    for lst in params["lists"]:
        syncer.sync_list(lst, result)
    syncer.sync_removed(names, result)
    return dict(result, changed=syncer.changed, diff={"before": _lines(syncer.before), "after": _lines(syncer.after)})


def _reader_folders(readers):
    """qubemail_list_acl output -> {user: [mailbox, ...]} in the order of *readers*."""
    folders = {}
    for entry in readers:
        if not isinstance(entry, dict) or not isinstance(entry.get("mailbox"), str) \
                or not isinstance(entry.get("users"), list):
            raise MlmmjError("archive_readers: each entry needs a mailbox (string) and users (list), not %r"
                             % (entry,))
        for user in entry["users"]:
            if not isinstance(user, str) or not user or user.startswith("-"):
                raise MlmmjError("archive_readers: invalid user %r for %s" % (user, entry["mailbox"]))
            folders.setdefault(user, [])
            if entry["mailbox"] not in folders[user]:
                folders[user].append(entry["mailbox"])
    return folders


def _list_masks(folders):
    """doveadm mailbox list masks covering *folders*: PARENT/* per parent (the archive namespace's
    separator is /), never a folder's own name: ``doveadm mailbox list -s`` prints a literal mask
    back whether it is subscribed or not."""
    masks = []
    for folder in folders:
        parent, sep, _ = folder.rpartition("/")
        mask = parent + sep + "*"
        if mask not in masks:
            masks.append(mask)
    return masks


def subscribe_readers(readers, run, check_mode=False, doveadm=DOVEADM):
    """Subscribe every reader to the archive folders of *readers* they have not subscribed yet.

    run(argv) -> (rc, stdout, stderr) executes doveadm. In check mode only the read-only
    ``doveadm mailbox list`` runs, and a user without an account yet (a --check run before the
    user's first convergence) counts as subscribed to nothing.
    """
    subscribed, before, after = {}, [], []
    for user, folders in sorted(_reader_folders(readers).items()):
        argv = [doveadm, "mailbox", "list", "-s", "-u", user] + _list_masks(folders)
        rc, out, err = run(argv)
        if rc == DOVEADM_NOUSER and check_mode:
            out = ""
        elif rc != 0:
            raise MlmmjError("%s failed (rc=%s): %s" % (" ".join(argv), rc, (err or out).strip()))
        have = set(out.splitlines())
        missing = [folder for folder in folders if folder not in have]
        if not missing:
            continue
        subscribed[user] = missing
        before += ["reader %s: %s not subscribed" % (user, folder) for folder in missing]
        after += ["reader %s: %s subscribed" % (user, folder) for folder in missing]
        if not check_mode:
            argv = [doveadm, "mailbox", "subscribe", "-u", user] + missing
            rc, out, err = run(argv)
            if rc != 0:
                raise MlmmjError("%s failed (rc=%s): %s" % (" ".join(argv), rc, (err or out).strip()))
    return {"subscribed": subscribed, "changed": bool(subscribed),
            "diff": {"before": _lines(before), "after": _lines(after)}}


def main():
    module = AnsibleModule(
        argument_spec=dict(lists=dict(type="list", elements="dict"),
                           archive_readers=dict(type="list", elements="dict"),
                           doveadm=dict(type="path", default=DOVEADM),
                           **{name: dict(type=kind, default=default) for name, (kind, default) in OPTIONS.items()}),
        required_one_of=[("lists", "archive_readers")],
        mutually_exclusive=[("lists", "archive_readers")],
        supports_check_mode=True)
    run = lambda argv: module.run_command(argv)  # noqa: E731
    try:
        if module.params["archive_readers"] is not None:
            result = subscribe_readers(module.params["archive_readers"], run, module.check_mode,
                                       module.params["doveadm"])
        else:
            result = sync(module.params, run, module.check_mode)
    except (MlmmjError, OSError) as exc:
        module.fail_json(msg=str(exc))
    if not module._diff:
        del result["diff"]
    module.exit_json(**result)


if __name__ == "__main__":
    main()
