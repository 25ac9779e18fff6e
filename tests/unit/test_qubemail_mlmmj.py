"""Unit tests for roles/lists/library/qubemail_mlmmj.py (the ``sync`` core, no Ansible run).

mlmmj-sub/mlmmj-unsub are replaced by ``FakeMlmmj``, which applies their documented on-disk
effect (docs/research/mlmmj.md §2 "On disk", mlmmj-sub(1)/mlmmj-unsub(1)) to the temp spool and
records the calls; the real tools are exercised by molecule.
"""
from __future__ import annotations

import fnmatch
import importlib.util
import json
import os
import pwd
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

MODULE = Path(__file__).resolve().parents[2] / "roles/lists/library/qubemail_mlmmj.py"
_spec = importlib.util.spec_from_file_location("qubemail_mlmmj", MODULE)
mm = importlib.util.module_from_spec(_spec)
sys.modules["qubemail_mlmmj"] = mm
_spec.loader.exec_module(mm)

OWNER = pwd.getpwuid(os.geteuid()).pw_name
SUBDIRS = ("subscribers.d", "digesters.d", "nomailsubs.d")


class FakeMlmmj:
    """Stand-in for mlmmj-sub / mlmmj-unsub: same effect on subscribers.d & co, records argv."""

    def __init__(self, fail: str | None = None):
        self.calls: list[list[str]] = []
        self.fail = fail  # address whose tool call exits 1

    def __call__(self, argv):
        self.calls.append(list(argv))
        tool, args = os.path.basename(argv[0]), argv[1:]
        listdir, addr = Path(args[args.index("-L") + 1]), args[args.index("-a") + 1].lower()
        if addr == self.fail:
            return 1, "", "mlmmj-sub: simulated failure for %s\n" % addr
        if tool == "mlmmj-sub":
            if addr not in subscribed(listdir):
                sub = "digesters.d" if "-d" in args else "nomailsubs.d" if "-n" in args else "subscribers.d"
                with open(listdir / sub / addr[0], "a") as handle:
                    handle.write(addr + "\n")
        elif tool == "mlmmj-unsub":  # without -d/-n/-N: removes from all three directories
            for sub in SUBDIRS:
                path = listdir / sub / addr[0]
                if path.exists():
                    keep = [line for line in path.read_text().splitlines() if line != addr]
                    path.write_text("".join(line + "\n" for line in keep)) if keep else path.unlink()
        else:
            raise AssertionError("unexpected tool %s" % argv)
        return 0, "", ""


def subscribed(listdir: Path) -> set[str]:
    out = set()
    for sub in SUBDIRS:
        for path in (listdir / sub).glob("*"):
            out.update(path.read_text().split())
    return out


def mklist(name="team", **kw):
    lst = {"name": name, "address": "%s@example.com" % name, "domain": "example.com",
           "description": "The %s" % name, "members": ["alice@example.com", "bob@example.org"],
           "moderators": ["alice@example.com"], "owners": ["admin@example.com"], "posting": "members",
           "subscription": "confirm", "max_message_size": 0, "reply_to_list": False, "subject_prefix": "",
           "archive": True}
    lst.update(kw)
    return lst


@pytest.fixture
def env(tmp_path):
    spool, state = tmp_path / "spool", tmp_path / "state"

    def do(lists, check_mode=False, run=None, **kw):
        params = {"lists": lists, "spool": str(spool), "state_dir": str(state), "owner": OWNER,
                  "smtp_port": 10025, "purge_removed": False, "mlmmj_bin": "/usr/bin"}
        params.update(kw)
        fake = run or FakeMlmmj()
        return mm.sync(params, fake, check_mode=check_mode), fake

    do.spool, do.state, do.root = spool, state, tmp_path
    return do


def ctl(env, name="team"):
    return {p.name: p.read_text() for p in (env.spool / name / "control").iterdir()}


def snapshot(root: Path):
    snap = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for entry in dirnames + filenames:
            path = Path(dirpath, entry)
            st = path.lstat()
            snap[str(path)] = (st.st_mode, st.st_uid, st.st_gid, path.read_bytes() if path.is_file() else None)
    return snap


def test_create_from_scratch(env):
    res, fake = env([mklist()])
    listdir = env.spool / "team"
    assert res["changed"] is True and res["lists"] == ["team"]
    for sub in ("incoming", "queue", "queue/discarded", "archive", "text", "subconf", "unsubconf", "bounce",
                "control", "moderation", "subscribers.d", "digesters.d", "requeue", "nomailsubs.d"):
        assert stat.S_IMODE((listdir / sub).stat().st_mode) == 0o700, sub
    assert stat.S_IMODE(listdir.stat().st_mode) == 0o700
    assert (listdir / "index").read_text() == ""
    files = ctl(env)
    # archive on: no noarchive (mlmmj keeps sent posts in archive/ for qubemail-list-archive)
    assert sorted(files) == sorted(["listaddress", "owner", "moderators", "subonlypost", "modnonsubposts", "tocc",
                                    "noget", "nolistsubsemail", "smtpport", "verp", "delheaders",
                                    "customheaders", "access"])
    assert files["verp"] == "postfix\n"
    assert files["listaddress"] == "team@example.com\n"
    assert files["owner"] == "admin@example.com\n" and files["moderators"] == "alice@example.com\n"
    assert files["smtpport"] == "10025\n" and files["tocc"] == "" and files["subonlypost"] == ""
    assert files["customheaders"] == (
        "List-Id: The team <team.example.com>\n"
        "List-Post: <mailto:team@example.com>\n"
        "List-Help: <mailto:team+help@example.com>\n"
        "List-Subscribe: <mailto:team+subscribe@example.com>\n"
        "List-Unsubscribe: <mailto:team+unsubscribe@example.com>\n"
        "List-Owner: <mailto:team+owner@example.com>\n"
        "Precedence: list\n"
        "X-Loop: team@example.com\n")
    assert files["delheaders"] == ("List-Id:\nList-Post:\nList-Help:\nList-Subscribe:\nList-Unsubscribe:\n"
                                   "List-Owner:\nPrecedence:\n")
    assert files["access"] == ("discard ^X-Loop: team@example\\.com\n"
                               "discard ^List-Id:.*<team\\.example\\.com>\nallow\n")
    for path in (listdir / "control").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
    desired = ["alice@example.com", "bob@example.org"]
    assert sorted(c[4] for c in fake.calls) == desired
    assert fake.calls[0] == ["/usr/bin/mlmmj-sub", "-L", str(listdir), "-a", "alice@example.com",
                             "-f", "-q", "-s"]
    assert (listdir / "subscribers.d" / "b").read_text() == "bob@example.org\n"
    assert res["added"] == {"team": desired} and res["removed_members"] == {"team": []}
    assert res["subscribers"] == {"team": desired} and res["removed"] == []
    assert json.loads((env.state / "team.managed").read_text()) == desired
    assert json.loads((env.state / "lists.json").read_text()) == {"lists": ["team"], "kept": []}
    assert "directory: absent" in res["diff"]["before"] and "member alice@example.com: subscribed, managed" \
        in res["diff"]["after"]
    assert not list((listdir / "control").glob(".qubemail.*"))


def test_rerun_is_noop(env):
    lists = [mklist(), mklist("other", archive=False, posting="any", subject_prefix="[o]")]
    env(lists)
    before = snapshot(env.root)
    res, fake = env(lists)
    assert res["changed"] is False and fake.calls == []
    assert res["diff"] == {"before": "", "after": ""}
    assert res["added"] == {"team": [], "other": []} and res["removed"] == []
    assert res["subscribers"]["other"] == ["alice@example.com", "bob@example.org"]
    assert snapshot(env.root) == before


def test_index_content_and_unmanaged_control_files_are_left_alone(env):
    env([mklist()])
    (env.spool / "team/index").write_text("42\n")
    (env.spool / "team/control/footer").write_text("hand-made\n")
    res, _ = env([mklist()])
    assert res["changed"] is False
    assert (env.spool / "team/control/footer").read_text() == "hand-made\n"
    assert (env.spool / "team/index").read_text() == "42\n"


@pytest.mark.parametrize("posting, present, absent", [
    ("members", {"subonlypost", "modnonsubposts"}, {"moderated"}),
    ("moderated", {"moderated"}, {"subonlypost", "modnonsubposts"}),
    ("any", set(), {"moderated", "subonlypost", "modnonsubposts"}),
])
def test_posting_switch(env, posting, present, absent):
    env([mklist(posting="moderated" if posting != "moderated" else "members")])
    res, fake = env([mklist(posting=posting)])
    files = ctl(env)
    assert res["changed"] is True and fake.calls == []
    assert present <= set(files) and not absent & set(files)
    assert files["moderators"] == "alice@example.com\n"


def test_moderators_file_always_written(env):
    env([mklist(posting="moderated", moderators=[], owners=[])])
    assert ctl(env)["moderators"] == "" and ctl(env)["moderated"] == ""


def test_held_posts_go_to_the_owners_of_a_list_without_moderators(env):
    # Non-member and oversized posts are held; someone must get the request.
    env([mklist(moderators=[], owners=["boss@example.com", "admin@example.com"])])
    assert ctl(env)["moderators"] == "admin@example.com\nboss@example.com\n"


@pytest.mark.parametrize("posting", ["members", "any", "moderated"])
def test_no_policy_mails_a_notice_to_the_poster(posting):
    files = mm.control_files(mklist(posting=posting, max_message_size=1024), 25)
    on = {name for name, content in files.items() if content is not None}
    # mlmmj's refusals (deny-post) and waiting notices (wait-post) go to the forgeable From: address.
    assert not on & {"maxmailsize", "notifymod", "notoccdenymails"}
    assert "tocc" in on  # no "not in To:/Cc:" refusal either
    assert not [rule for rule in files["access"].splitlines() if rule.startswith("deny")]


@pytest.mark.parametrize("subscription, present", [
    ("confirm", set()), ("open", {"nosubconfirm"}), ("closed", {"closedlistsub"})])
def test_subscription_switch(env, subscription, present):
    env([mklist(subscription="open")])
    env([mklist(subscription="closed")])
    res, _ = env([mklist(subscription=subscription)])
    assert ({"nosubconfirm", "closedlistsub"} & set(ctl(env))) == present
    assert res["changed"] is (subscription != "closed")


def test_reply_to_size_prefix_switches(env):
    env([mklist()])
    res, _ = env([mklist(reply_to_list=True, max_message_size=1048576, subject_prefix="[team]")])
    files = ctl(env)
    assert res["changed"] is True
    assert files["customheaders"].endswith("X-Loop: team@example.com\nReply-To: team@example.com\n")
    assert files["delheaders"].endswith("Precedence:\nReply-To:\n")
    # the alias pipe marks a post over the limit; access holds it for moderation
    assert "maxmailsize" not in files and files["prefix"] == "[team]\n"
    assert files["access"].splitlines()[-2:] == ["moderate ^X-Qubemail-Oversize:", "allow"]
    assert "control/prefix: (absent)" in res["diff"]["before"]
    assert "control/prefix:\n    [team]" in res["diff"]["after"]
    res, _ = env([mklist()])
    files = ctl(env)
    assert "Reply-To" not in files["customheaders"] + files["delheaders"]
    assert "prefix" not in files and "Oversize" not in files["access"]
    assert "control/prefix: (absent)" in res["diff"]["after"]


def test_list_id_phrase_quoting_and_encoding():
    assert mm._phrase("Team list") == "Team list"
    assert mm._phrase(' The "A"\n team, inc.') == '"The \\"A\\" team, inc."'
    assert mm._phrase("Équipe") == "=?utf-8?q?=C3=89quipe?="
    files = mm.control_files(mklist(description=""), 25)
    assert files["customheaders"].startswith("List-Id: team <team.example.com>\n")


def test_member_add_remove_only_touches_managed(env):
    env([mklist()])
    listdir = env.spool / "team"
    with open(listdir / "subscribers.d" / "c", "a") as handle:  # self-subscribed by e-mail
        handle.write("carol@example.net\n")
    res, fake = env([mklist(members=["alice@example.com", "dave@example.com"])])
    assert [(os.path.basename(c[0]), c[4]) for c in fake.calls] == [
        ("mlmmj-sub", "dave@example.com"), ("mlmmj-unsub", "bob@example.org")]
    assert fake.calls[1] == ["/usr/bin/mlmmj-unsub", "-L", str(listdir), "-a", "bob@example.org", "-q", "-s"]
    assert res["added"]["team"] == ["dave@example.com"]
    assert res["removed_members"]["team"] == ["bob@example.org"]
    assert res["subscribers"]["team"] == ["alice@example.com", "carol@example.net", "dave@example.com"]
    assert "carol" not in res["diff"]["before"] + res["diff"]["after"]
    assert "member bob@example.org: not subscribed\n" in res["diff"]["after"]
    # carol is never removed, even with an empty inventory
    res, fake = env([mklist(members=[], archive=False)])
    assert res["subscribers"]["team"] == ["carol@example.net"]
    assert json.loads((env.state / "team.managed").read_text()) == []


def test_inventory_adopts_self_subscriber_and_respects_digest_mode(env):
    env([mklist()])
    listdir = env.spool / "team"
    (listdir / "digesters.d" / "e").write_text("erin@example.com\n")
    (listdir / "nomailsubs.d" / "b").write_text("bob@example.org\n")  # bob switched himself to nomail
    (listdir / "subscribers.d" / "b").unlink()
    res, fake = env([mklist(members=["alice@example.com", "bob@example.org", "erin@example.com"])])
    assert fake.calls == [] and res["changed"] is True  # only the managed set changed
    assert "member erin@example.com: subscribed, managed" in res["diff"]["after"]
    assert "erin@example.com" in json.loads((env.state / "team.managed").read_text())
    res, fake = env([mklist(members=["alice@example.com"])])
    assert sorted(c[4] for c in fake.calls) == ["bob@example.org", "erin@example.com"]
    assert subscribed(listdir) == {"alice@example.com"}


def test_unsubscribed_managed_member_is_resubscribed(env):
    env([mklist()])
    (env.spool / "team/subscribers.d/b").unlink()
    res, fake = env([mklist()])
    assert [c[4] for c in fake.calls] == ["bob@example.org"] and res["changed"] is True


def test_archive_on_off(env):
    env([mklist(archive=False)])
    assert ctl(env)["noarchive"] == ""
    res, fake = env([mklist(archive=True)])
    assert "noarchive" not in ctl(env) and fake.calls == []
    assert "control/noarchive: (absent)" in res["diff"]["after"]
    env([mklist(archive=False)])
    assert ctl(env)["noarchive"] == ""


def test_the_former_archive_subscriber_is_unsubscribed(env):
    # Earlier versions subscribed (and managed) mlarchive+NAME; the address no longer files anything.
    env([mklist()])
    with open(env.spool / "team/subscribers.d/m", "a") as handle:
        handle.write("mlarchive+team@example.com\n")
    (env.state / "team.managed").write_text(json.dumps(["alice@example.com", "bob@example.org",
                                                        "mlarchive+team@example.com"]))
    res, fake = env([mklist()])
    assert [(os.path.basename(c[0]), c[4]) for c in fake.calls] == [("mlmmj-unsub", "mlarchive+team@example.com")]
    assert res["subscribers"]["team"] == ["alice@example.com", "bob@example.org"]


def test_removed_list_kept_then_readded(env):
    env([mklist(), mklist("other")])
    res, fake = env([mklist()])
    assert res["changed"] is True and res["removed"] == ["other"] and res["purged"] == []
    assert fake.calls == [] and "other" not in res["subscribers"]
    assert (env.spool / "other/subscribers.d/a").exists() and (env.state / "other.managed").exists()
    assert "list other: removed, directory kept" in res["diff"]["after"]
    assert json.loads((env.state / "lists.json").read_text()) == {"lists": ["team"], "kept": ["other"]}
    res, _ = env([mklist()])
    assert res["changed"] is False and res["removed"] == []
    res, fake = env([mklist(), mklist("other")])  # re-add: subscribers survived, nothing to subscribe
    assert fake.calls == [] and res["changed"] is True and res["removed"] == []
    assert res["subscribers"]["other"] == ["alice@example.com", "bob@example.org"]


def test_removed_list_purged_now_or_later(env):
    env([mklist(), mklist("other"), mklist("third")])
    env([mklist(), mklist("third")])  # "other" kept
    res, _ = env([mklist()], purge_removed=True)
    assert res["removed"] == ["other", "third"] and res["purged"] == ["other", "third"]
    assert not (env.spool / "other").exists() and not (env.spool / "third").exists()
    assert not (env.state / "other.managed").exists() and (env.spool / "team").exists()
    assert json.loads((env.state / "lists.json").read_text()) == {"lists": ["team"], "kept": []}
    res, _ = env([mklist()], purge_removed=True)
    assert res["changed"] is False and res["removed"] == []


def test_check_mode_from_scratch_changes_nothing(env):
    res, fake = env([mklist()], check_mode=True)
    assert res["changed"] is True and fake.calls == []
    assert not env.spool.exists() and not env.state.exists()
    assert res["added"]["team"] == ["alice@example.com", "bob@example.org"]
    assert res["subscribers"]["team"] == res["added"]["team"]
    assert "control/customheaders:\n    List-Id: The team <team.example.com>" in res["diff"]["after"]


def test_check_mode_on_existing_lists_changes_nothing(env):
    env([mklist(), mklist("other")])
    os.chmod(env.spool / "team/archive", 0o755)
    before = snapshot(env.root)
    res, fake = env([mklist(members=["zed@example.com"], posting="any", reply_to_list=True)],
                    check_mode=True, purge_removed=True)
    assert res["changed"] is True and fake.calls == []
    assert snapshot(env.root) == before
    assert res["added"]["team"] == ["zed@example.com"]
    assert res["removed_members"]["team"] == ["alice@example.com", "bob@example.org"]
    assert res["subscribers"]["team"] == ["zed@example.com"]
    assert res["removed"] == res["purged"] == ["other"]
    assert "dir archive: mode 0755" in res["diff"]["before"]
    # the real run does what check mode predicted
    real, _ = env([mklist(members=["zed@example.com"], posting="any", reply_to_list=True)], purge_removed=True)
    assert {k: real[k] for k in ("added", "removed_members", "subscribers", "removed", "diff")} == \
        {k: res[k] for k in ("added", "removed_members", "subscribers", "removed", "diff")}


def test_tool_failure_reports_stderr_and_records_partial_state(env):
    with pytest.raises(mm.MlmmjError, match="simulated failure for bob@example.org"):
        env([mklist()], run=FakeMlmmj(fail="bob@example.org"))
    assert json.loads((env.state / "team.managed").read_text()) == ["alice@example.com"]
    assert not (env.state / "lists.json").exists()
    res, fake = env([mklist()])
    assert [c[4] for c in fake.calls] == ["bob@example.org"]


def test_silent_refusal_is_an_error(env):
    with pytest.raises(mm.MlmmjError, match="did not change alice"):
        env([mklist()], run=lambda argv: (0, "", ""))


def test_attribute_drift_is_repaired(env):
    env([mklist()])
    listdir = env.spool / "team"
    os.chmod(listdir / "queue", 0o755)
    os.chmod(listdir / "control/owner", 0o600)
    res, fake = env([mklist()])
    assert res["changed"] is True and fake.calls == []
    assert stat.S_IMODE((listdir / "queue").stat().st_mode) == 0o700
    assert stat.S_IMODE((listdir / "control/owner").stat().st_mode) == 0o644
    assert "dir queue: mode 0755" in res["diff"]["before"] and "dir queue: mode 0700" in res["diff"]["after"]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown")
def test_ownership_drift_is_repaired_as_root(env):
    env([mklist()])
    nobody = pwd.getpwnam("nobody")
    target = env.spool / "team/control/access"
    os.chown(target, nobody.pw_uid, nobody.pw_gid)
    res, _ = env([mklist()])
    assert res["changed"] is True and target.stat().st_uid == 0
    assert "control/access: owner %d:%d" % (nobody.pw_uid, nobody.pw_gid) in res["diff"]["before"]


def test_chown_is_injectable(env, monkeypatch):
    calls = []
    monkeypatch.setattr(mm, "owner_ids", lambda owner: (4242, 4343) if owner == "mlmmj" else None)
    params = {"lists": [mklist()], "spool": str(env.spool), "state_dir": str(env.state), "owner": "mlmmj"}
    mm.sync(params, FakeMlmmj(), chown=lambda path, uid, gid: calls.append((path, uid, gid)))
    assert {(uid, gid) for _, uid, gid in calls} == {(4242, 4343)}
    chowned = {os.path.relpath(path, env.spool) for path, _, _ in calls}
    assert {"team", "team/queue/discarded"} <= chowned
    assert any(p.startswith("team/.qubemail.") for p in chowned)  # index: temp file chowned before rename
    assert any(p.startswith("team/control/.qubemail.") for p in chowned)


def test_missing_owner(env):
    with pytest.raises(mm.MlmmjError, match="does not exist"):
        env([mklist()], owner="no-such-user-qubemail")
    res, _ = env([mklist()], owner="no-such-user-qubemail", check_mode=True)
    assert res["changed"] is True


@pytest.mark.parametrize("bad", [{"name": "../etc"}, {"posting": "nobody"}, {"subscription": "x"},
                                 {"subject_prefix": "a\nb"}, {"members": ["not-an-address"]}])
def test_invalid_input_rejected(env, bad):
    with pytest.raises(mm.MlmmjError):
        env([mklist(**bad)])


def test_duplicate_names_rejected(env):
    with pytest.raises(mm.MlmmjError, match="duplicate"):
        env([mklist(), mklist()])


def test_200_lists_of_50_members_reconverge_fast(env):
    lists = [mklist("l%03d" % i, members=["u%02d@example.com" % j for j in range(50)]) for i in range(200)]
    env(lists)
    start = time.monotonic()
    res, fake = env(lists)
    elapsed = time.monotonic() - start
    assert res["changed"] is False and fake.calls == []
    assert len(res["subscribers"]["l199"]) == 50
    assert elapsed < 10, elapsed


# --------------------------------------------------------------------------
# archive_readers: subscribing the readers to their archive folders
# --------------------------------------------------------------------------

def doveadm_list(subscriptions, masks):
    """doveadm 2.3 mailbox list -s: the subscribed mailboxes a wildcard mask matches; a literal
    mask (no * or %) is printed back whether it is subscribed or not (seen on Debian 12)."""
    out = []
    for mask in masks:
        if "*" in mask or "%" in mask:
            out += [m for m in subscriptions if fnmatch.fnmatchcase(m, mask.replace("%", "*")) and m not in out]
        elif mask not in out:
            out.append(mask)
    return "".join(m + "\n" for m in out)


class FakeDoveadm:
    """Stand-in for doveadm mailbox list -s / mailbox subscribe: per-user subscriptions, records argv."""

    def __init__(self, subscriptions=None, users=("alice", "bob", "carol"), fail=None):
        self.subs = {user: list((subscriptions or {}).get(user, [])) for user in users}
        self.calls: list[list[str]] = []
        self.fail = fail  # (verb, user) whose call exits 75

    def __call__(self, argv):
        self.calls.append(list(argv))
        assert argv[:2] == ["/usr/bin/doveadm", "mailbox"], argv
        verb, user = argv[2], argv[argv.index("-u") + 1]
        names = argv[argv.index("-u") + 2:]
        if (verb, user) == self.fail:
            return 75, "", "doveadm: simulated failure\n"
        if user not in self.subs:
            return 67, "", "doveadm(%s): Error: User doesn't exist\n" % user
        if verb == "list":
            assert argv[3] == "-s", argv
            return 0, doveadm_list(self.subs[user], names), ""
        assert verb == "subscribe", argv
        self.subs[user] += [m for m in names if m not in self.subs[user]]
        return 0, "", ""


READERS = [{"mailbox": "Mailing Lists/sales", "users": ["alice", "bob"]},
           {"mailbox": "Mailing Lists/team", "users": ["alice"]},
           {"mailbox": "Mailing Lists/quiet", "users": []}]


def test_readers_are_subscribed_to_the_missing_folders_only():
    fake = FakeDoveadm({"alice": ["Mailing Lists/team", "INBOX"]})
    res = mm.subscribe_readers(READERS, fake)
    assert res["changed"] is True
    assert res["subscribed"] == {"alice": ["Mailing Lists/sales"], "bob": ["Mailing Lists/sales"]}
    assert fake.calls == [
        ["/usr/bin/doveadm", "mailbox", "list", "-s", "-u", "alice", "Mailing Lists/*"],
        ["/usr/bin/doveadm", "mailbox", "subscribe", "-u", "alice", "Mailing Lists/sales"],
        ["/usr/bin/doveadm", "mailbox", "list", "-s", "-u", "bob", "Mailing Lists/*"],
        ["/usr/bin/doveadm", "mailbox", "subscribe", "-u", "bob", "Mailing Lists/sales"]]
    assert fake.subs["alice"] == ["Mailing Lists/team", "INBOX", "Mailing Lists/sales"]
    assert res["diff"] == {"before": "reader alice: Mailing Lists/sales not subscribed\n"
                                     "reader bob: Mailing Lists/sales not subscribed\n",
                           "after": "reader alice: Mailing Lists/sales subscribed\n"
                                    "reader bob: Mailing Lists/sales subscribed\n"}


def test_subscribed_readers_are_a_noop():
    fake = FakeDoveadm()
    mm.subscribe_readers(READERS, fake)
    fake.calls.clear()
    res = mm.subscribe_readers(READERS, fake)
    assert res == {"subscribed": {}, "changed": False, "diff": {"before": "", "after": ""}}
    assert [argv[2] for argv in fake.calls] == ["list", "list"]


def test_a_reader_of_several_folders_gets_one_subscribe_call_in_folder_order():
    fake = FakeDoveadm()
    res = mm.subscribe_readers(READERS, fake)
    assert res["subscribed"]["alice"] == ["Mailing Lists/sales", "Mailing Lists/team"]
    assert fake.calls[1] == ["/usr/bin/doveadm", "mailbox", "subscribe", "-u", "alice",
                             "Mailing Lists/sales", "Mailing Lists/team"]


def test_folders_are_listed_by_wildcard_masks_only():
    assert mm._list_masks(["Mailing Lists/a", "Mailing Lists/b", "Archives/Lists/c", "top"]) == \
        ["Mailing Lists/*", "Archives/Lists/*", "*"]
    fake = FakeDoveadm({"alice": ["Archives/c"]})
    res = mm.subscribe_readers([{"mailbox": "Archives/c", "users": ["alice"]},
                                {"mailbox": "Mailing Lists/sales", "users": ["alice"]}], fake)
    assert res["subscribed"] == {"alice": ["Mailing Lists/sales"]}
    assert fake.calls[0][6:] == ["Archives/*", "Mailing Lists/*"]


def test_no_readers_no_calls():
    fake = FakeDoveadm()
    assert mm.subscribe_readers([], fake)["changed"] is False
    assert mm.subscribe_readers([{"mailbox": "Mailing Lists/x", "users": []}], fake)["changed"] is False
    assert fake.calls == []


def test_check_mode_lists_but_does_not_subscribe():
    fake = FakeDoveadm({"alice": ["Mailing Lists/team"]})
    res = mm.subscribe_readers(READERS, fake, check_mode=True)
    assert res["changed"] is True
    assert res["subscribed"] == {"alice": ["Mailing Lists/sales"], "bob": ["Mailing Lists/sales"]}
    assert [argv[2] for argv in fake.calls] == ["list", "list"]
    assert fake.subs == {"alice": ["Mailing Lists/team"], "bob": [], "carol": []}


def test_a_user_without_an_account_is_an_error_except_in_check_mode():
    readers = [{"mailbox": "Mailing Lists/sales", "users": ["alice", "newcomer"]}]
    res = mm.subscribe_readers(readers, FakeDoveadm(), check_mode=True)
    assert res["subscribed"] == {"alice": ["Mailing Lists/sales"], "newcomer": ["Mailing Lists/sales"]}
    fake = FakeDoveadm()
    with pytest.raises(mm.MlmmjError, match=r"doveadm mailbox list -s -u newcomer .*rc=67.*User doesn't exist"):
        mm.subscribe_readers(readers, fake)
    assert [argv[2] for argv in fake.calls] == ["list", "subscribe", "list"]  # alice's done, then the stop


@pytest.mark.parametrize("verb", ["list", "subscribe"])
def test_doveadm_failure_reports_stderr(verb):
    with pytest.raises(mm.MlmmjError, match=r"doveadm mailbox %s .*rc=75.*simulated failure" % verb):
        mm.subscribe_readers(READERS, FakeDoveadm(fail=(verb, "bob")))
    with pytest.raises(mm.MlmmjError, match="rc=75"):  # check mode fails on doveadm errors other than 67
        mm.subscribe_readers(READERS, FakeDoveadm(fail=("list", "bob")), check_mode=True)


@pytest.mark.parametrize("bad", [["Mailing Lists/x"], [{"mailbox": "Mailing Lists/x"}],
                                 [{"mailbox": "Mailing Lists/x", "users": "alice"}],
                                 [{"mailbox": None, "users": ["alice"]}],
                                 [{"mailbox": "Mailing Lists/x", "users": ["-ualice"]}],
                                 [{"mailbox": "Mailing Lists/x", "users": [""]}]])
def test_invalid_readers_rejected(bad):
    fake = FakeDoveadm()
    with pytest.raises(mm.MlmmjError, match="archive_readers"):
        mm.subscribe_readers(bad, fake)
    assert fake.calls == []


FAKE_DOVEADM = r'''#!%s
import json, sys
sys.path.insert(0, %r)
from test_qubemail_mlmmj import doveadm_list
state, args = sys.argv[0] + ".json", sys.argv[1:]
subs = json.load(open(state))
user, names = args[args.index("-u") + 1], args[args.index("-u") + 2:]
if args[1] == "list":
    print(doveadm_list(subs.get(user, []), names), end="")
else:
    subs[user] = subs.get(user, []) + names
    json.dump(subs, open(state, "w"))
'''


def run_module(tmp_path, args, check_mode=False):
    payload = {"ANSIBLE_MODULE_ARGS": dict(args, _ansible_check_mode=check_mode, _ansible_diff=True)}
    proc = subprocess.run([sys.executable, str(MODULE), json.dumps(payload)], capture_output=True, text=True,
                          cwd=tmp_path, check=False)
    return json.loads(proc.stdout)


@pytest.fixture
def doveadm(tmp_path):
    path = tmp_path / "doveadm"
    path.write_text(FAKE_DOVEADM % (sys.executable, str(Path(__file__).parent)))
    path.chmod(0o755)
    Path(str(path) + ".json").write_text(json.dumps({"alice": ["Mailing Lists/team"]}))
    return path


def test_module_subscribes_readers_and_supports_check_mode(tmp_path, doveadm):
    args = {"archive_readers": READERS[:2], "doveadm": str(doveadm)}
    state = Path(str(doveadm) + ".json")
    res = run_module(tmp_path, args, check_mode=True)
    assert res["changed"] is True and res["subscribed"] == {"alice": ["Mailing Lists/sales"],
                                                            "bob": ["Mailing Lists/sales"]}
    assert json.loads(state.read_text()) == {"alice": ["Mailing Lists/team"]}
    res = run_module(tmp_path, args)
    assert res["changed"] is True and "reader bob: Mailing Lists/sales subscribed" in res["diff"]["after"]
    assert "lists" not in res and "subscribers" not in res
    assert json.loads(state.read_text()) == {"alice": ["Mailing Lists/team", "Mailing Lists/sales"],
                                             "bob": ["Mailing Lists/sales"]}
    res = run_module(tmp_path, args)
    assert res["changed"] is False and res["subscribed"] == {}


@pytest.mark.parametrize("args, message", [({}, "one of the following is required: lists, archive_readers"),
                                           ({"lists": [], "archive_readers": []}, "mutually exclusive")])
def test_module_needs_lists_or_archive_readers(tmp_path, args, message):
    res = run_module(tmp_path, args)
    assert res["failed"] is True and message in res["msg"]
