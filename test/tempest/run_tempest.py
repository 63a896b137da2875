#!/usr/bin/python3
"""Runs OpenStack Tempest's volume API suite (`tempest.api.volume`) against Clinker.

What it does, from nothing:
1. starts a throwaway Keystone (scripts/test_server_keystone.sh, through test/e2e's
   keystone_admin), a service user for clinkerd, and the catalog entries a Cinder has
   (`volumev3` and `block-storage`);
2. starts a clinkerd (all roles, Keystone auth, two file back-ends: BACKEND_NAMES) in a temp
   dir;
3. makes a Tempest workspace with a tempest.conf written from what Clinker serves (the
   microversion range it advertises, its back-end names, the features that work: see
   TEMPEST_CONF), dynamic credentials on (Tempest makes its own projects and users per class);
4. runs the listed tests (`tempest run --load-list`), reads the subunit stream, and writes one
   line per listed test: `id<TAB>pass|fail|skip<TAB>reason`, sorted, the format of the reference
   runs in the shared reference folder (so that two runs compare with `join`);
5. compares with the expected list: every test listed as expected to pass must pass.

Tests listed in known-defects.txt are not run: each is a defect of Tempest itself in this
configuration (it fails against real Cinder too, for a reason outside the volume API), written
there with its reason. They are reported as skipped with that reason, never counted as passes.

Exit status: 0 when every expected test passed (other tests may fail: they are the work still to
do), 1 when an expected test did not pass, 2 when the run itself could not be made (Keystone or
clinkerd did not start, Tempest missing, no result stream). Tests that pass but are not in the
expected list are named at the end, so that the list can grow (`--update-expected` adds them).

Everything started is stopped by PID when the script ends, also on failure or Ctrl-C. Tempest is
Debian's package (`tempest`): its interpreter is Debian's python3, hence the shebang.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

sys.dont_write_bytecode = True

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "test", "e2e"))

import clinker_harness as h  # noqa: E402
import keystone_admin as ka  # noqa: E402

DEFAULT_TESTS = os.path.join(HERE, "tests.txt")
DEFAULT_EXPECTED = os.path.join(HERE, "expected-pass.txt")
DEFAULT_KNOWN_DEFECTS = os.path.join(HERE, "known-defects.txt")
DEFAULT_CLINKERD = os.path.join(ROOT, "build", "release", "clinkerd")
DEFAULT_RESULTS = os.path.join(ROOT, "build", "tempest", "results.tsv")

# The whole Tempest run may take this long before it is stopped (the reference run takes about 4
# minutes at concurrency 2).
RUN_TIMEOUT_S = 1500
# The back-ends clinkerd runs in this configuration: two file back-ends under its state dir
# ([[backends]], as a devstack Cinder with two enabled_backends), so that Tempest's multi-backend
# tests (multi_backend, backend_names) run.
BACKEND_NAMES = ("file-1", "file-2")

# Tempest's configuration. Features are on as soon as Clinker serves them; the rest of the
# reference configuration (no compute, image or network service, volume_size 1) is kept so that
# the results compare test by test with real Cinder's.
TEMPEST_CONF = """\
[DEFAULT]
log_file = {workspace}/tempest.log
use_stderr = false

[auth]
admin_username = {admin_user}
admin_password = {admin_password}
admin_project_name = {admin_project}
admin_domain_name = Default
use_dynamic_credentials = true
create_isolated_networks = false

[identity]
uri_v3 = {keystone_url}
auth_version = v3
region = {region}
v3_endpoint_type = public

[identity-feature-enabled]
api_v2 = false

[service_available]
cinder = true
nova = false
glance = false
neutron = false
swift = false

[volume]
catalog_type = volumev3
endpoint_type = publicURL
min_microversion = {min_microversion}
max_microversion = {max_microversion}
backend_names = {backend_names}
storage_protocol = {storage_protocol}
vendor_name = {vendor_name}
volume_size = 1
build_timeout = 60
build_interval = 1

[volume-feature-enabled]
backup = true
snapshot = true
clone = true
manage_snapshot = false
manage_volume = false
extend_attached_volume = false
extend_attached_encrypted_volume = false
multi_backend = true
api_extensions = all
"""


def log(message):
    sys.stderr.write("run_tempest: %s\n" % message)
    sys.stderr.flush()


def parse_args():
    parser = argparse.ArgumentParser(
        description="Run Tempest's tempest.api.volume tests against clinkerd behind a throwaway "
        "Keystone; write one result line per test and check the expected-pass list.")
    parser.add_argument("--clinkerd", default=DEFAULT_CLINKERD,
                        help="the clinkerd binary (default: %(default)s)")
    parser.add_argument("--tests", default=DEFAULT_TESTS,
                        help="the test ids to run, one per line (default: %(default)s)")
    parser.add_argument("--filter", default=None, metavar="REGEX",
                        help="run only the listed tests whose id matches REGEX (Python re.search)")
    parser.add_argument("--expected", default=DEFAULT_EXPECTED,
                        help="the tests that must pass, one id per line, '#' comments "
                        "(default: %(default)s)")
    parser.add_argument("--known-defects", default=DEFAULT_KNOWN_DEFECTS,
                        help="tests not run, each a defect of Tempest in this configuration: "
                        "one `id  # reason` per line (default: %(default)s)")
    parser.add_argument("--results", default=DEFAULT_RESULTS,
                        help="where the per-test results go (default: %(default)s)")
    parser.add_argument("--concurrency", type=int, default=2,
                        help="Tempest workers (default: %(default)s)")
    parser.add_argument("--update-expected", action="store_true",
                        help="add the tests that passed to the expected list (never removes)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the work dir (Tempest workspace, clinkerd's state and logs)")
    return parser.parse_args()


def read_ids(path):
    ids = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                ids.append(line)
    return ids


def read_known_defects(path):
    """{test key: reason} from lines `test.id  # reason` (a reason is required)."""
    defects = {}
    if not os.path.exists(path):
        return defects
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            test_id, _, reason = line.partition("#")
            if not reason.strip():
                raise AssertionError("%s:%d: a known defect needs its reason after '#'" %
                                     (path, number))
            defects[test_key(test_id.strip())] = reason.strip()
    return defects


def microversion_range(port):
    """The (min, max) microversions clinkerd advertises on its versions document."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # Loopback: no proxy.
    with opener.open("http://127.0.0.1:%d/v3/" % port, timeout=10) as reply:
        version = json.load(reply)["versions"][0]
    return version["min_version"], version["version"]


def start_clinkerd(ks, service_user, work_dir):
    config = os.path.join(work_dir, "clinker.toml")
    with open(config, "w", encoding="utf-8") as f:
        f.write("[api]\nauth_strategy = \"keystone\"\n\n"
                "[keystone_authtoken]\n"
                "auth_url = \"%s\"\nusername = \"%s\"\npassword = \"%s\"\n"
                "project_name = \"%s\"\nuser_domain_name = \"Default\"\n"
                "project_domain_name = \"Default\"\n" %
                (ks.url, service_user[0], service_user[1], service_user[2]))
        for name in BACKEND_NAMES:
            f.write("\n[[backends]]\nname = \"%s\"\n" % name)
    daemon = h.Daemon()
    try:
        daemon.start(["--config", config])
    except BaseException:
        daemon.close()
        raise
    return daemon


# The first line of an exception in a traceback: a dotted class name, or a bare one ending in
# Error, Exception or Failure, then a colon or the end of the line.
EXCEPTION_LINE = re.compile(r"^(?:[a-z_]\w*\.)+[A-Z]\w*(?::|$)|^[A-Z]\w*(?:Error|Exception|Failure)(?::|$)")


def test_key(test_id):
    """A test's id without Tempest's `[id-...,tags]` suffix (the reference files' form)."""
    return re.sub(r"\[.*\]$", "", test_id.strip())


def parse_subunit(stream_path):
    """{test id: (status, reason)} from a subunit v2 stream; class-level failures under their
    pseudo ids ("setUpClass (module.Class)")."""
    import subunit  # Debian's python3-subunit, a dependency of tempest.
    import testtools

    results = {}

    def on_test(test):
        test_id = test_key(test["id"])
        status = test["status"]
        details = test.get("details", {})
        if status in ("success", "xfail"):
            results[test_id] = ("pass", "")
        elif status == "skip":
            reason = details.get("reason")
            results[test_id] = ("skip", reason.as_text().strip() if reason else "")
        elif status in ("fail", "uxsuccess"):
            text = ""
            traceback = details.get("traceback")
            if traceback is not None:
                lines = [line for line in traceback.as_text().splitlines() if line.strip()]
                # From the last exception line ("tempest.lib.exceptions.NotFound: ...",
                # "AssertionError: ...") to the end: the exception and its details.
                start = None
                for index, line in enumerate(lines):
                    if EXCEPTION_LINE.match(line):
                        start = index
                if start is None:
                    start = max(len(lines) - 1, 0)
                text = " ".join(lines[start:])
            results[test_id] = ("fail", " ".join(text.split())[:1000])

    with open(stream_path, "rb") as f:
        case = subunit.ByteStreamToStreamResult(f, non_subunit_name="stdout")
        result = testtools.StreamToDict(on_test)
        result.startTestRun()
        try:
            case.run(result)
        finally:
            result.stopTestRun()
    return results


def per_test_results(listed, raw):
    """One (status, reason) per listed test. A class whose set-up skipped or failed reports under
    a pseudo id ("setUpClass (module.Class)") instead of its tests: they take its outcome. A test
    with no result at all is a failure."""
    class_outcomes = {}
    for test_id, (status, reason) in raw.items():
        match = re.match(r"^(setUpClass|tearDownClass) \((.+)\)$", test_id)
        if match and status in ("fail", "skip"):
            prefix = "%s failed: " % match.group(1) if status == "fail" else ""
            class_outcomes.setdefault(match.group(2), (status, prefix + reason))
    out = {}
    for test_id in map(test_key, listed):
        if test_id in raw:
            out[test_id] = raw[test_id]
        else:
            class_name = test_id.rsplit(".", 1)[0]
            out[test_id] = class_outcomes.get(class_name, ("fail", "did not run (no result)"))
    return out


def run(args, work_dir):
    listed = read_ids(args.tests)
    if args.filter:
        listed = [t for t in listed if re.search(args.filter, t)]
    if not listed:
        log("no listed test matches the filter")
        return 2
    expected = set(map(test_key, read_ids(args.expected))) if os.path.exists(
        args.expected) else set()
    defects = read_known_defects(args.known_defects)
    excluded = {test_key(t): defects[test_key(t)] for t in listed if test_key(t) in defects}
    listed = [t for t in listed if test_key(t) not in excluded]
    if expected & set(excluded):
        log("listed both as expected to pass and as a Tempest defect: %s" %
            ", ".join(sorted(expected & set(excluded))))
        return 2

    h.CLINKERD = os.path.abspath(args.clinkerd)
    if not os.access(h.CLINKERD, os.X_OK):
        log("clinkerd is not an executable file: %s" % h.CLINKERD)
        return 2
    if shutil.which("tempest") is None:
        log("tempest is not installed (Debian package tempest; scripts/setup.sh installs it)")
        return 2

    started = time.monotonic()
    server = ka.Server()
    daemon = None
    try:
        ks = server.start()
        log("Keystone on %s (%.0f s)" % (ks.url, time.monotonic() - started))
        suffix = uuid.uuid4().hex[:8]
        service_project = "service-" + suffix
        service_project_id = ks.create_project(service_project)
        ks.ensure_role("service")
        service_user = ("clinker-" + suffix, uuid.uuid4().hex, service_project)
        ks.create_user_on_project(service_user[0], service_user[1], service_project_id,
                                  ["service", "admin"])
        daemon = start_clinkerd(ks, service_user, work_dir)
        ks.register_block_storage(ka.block_storage_url(daemon.port))
        min_version, max_version = microversion_range(daemon.port)
        log("clinkerd on port %d, microversions %s to %s" % (daemon.port, min_version,
                                                            max_version))

        workspace = os.path.join(work_dir, "tempest")
        # The workspace registry in the work dir: the default one in ~/.tempest keeps every
        # workspace ever made and refuses a second one of the same name.
        subprocess.run(["tempest", "init", "--name", "clinker-" + suffix, "--workspace-path",
                        os.path.join(work_dir, "workspaces.yaml"), workspace],
                       check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       timeout=120)
        with open(os.path.join(workspace, "etc", "tempest.conf"), "w", encoding="utf-8") as f:
            f.write(TEMPEST_CONF.format(workspace=workspace, admin_user=ks.admin_user,
                                        admin_password=ks.admin_password,
                                        admin_project=ks.admin_project, keystone_url=ks.url,
                                        region=ks.region, min_microversion=min_version,
                                        max_microversion=max_version,
                                        backend_names=",".join(BACKEND_NAMES),
                                        storage_protocol="file", vendor_name="Clinker"))
        load_list = os.path.join(work_dir, "load-list.txt")
        with open(load_list, "w", encoding="utf-8") as f:
            f.write("\n".join(listed) + "\n")
        stream = os.path.join(work_dir, "tempest.subunit")
        log("running %d tests, concurrency %d" % (len(listed), args.concurrency))
        with open(stream, "wb") as out, open(os.path.join(work_dir, "tempest-run.log"),
                                              "wb") as err:
            proc = subprocess.run(["tempest", "run", "--load-list", load_list, "--concurrency",
                                   str(args.concurrency), "--subunit"],
                                  cwd=workspace, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                  timeout=RUN_TIMEOUT_S, check=False)
        log("tempest run exited %d after %.0f s" % (proc.returncode,
                                                   time.monotonic() - started))
        raw = parse_subunit(stream)
        if not raw:
            log("no results in the subunit stream; tempest's output:")
            with open(os.path.join(work_dir, "tempest-run.log"), encoding="utf-8",
                      errors="replace") as f:
                sys.stderr.write(f.read()[-5000:])
            return 2
    finally:
        if daemon is not None:
            if args.keep:
                shutil.copytree(daemon.root, os.path.join(work_dir, "clinkerd"),
                                dirs_exist_ok=True, ignore_dangling_symlinks=True,
                                ignore=shutil.ignore_patterns("*.img"))
            daemon.close()
        server.close()

    results = per_test_results(listed, raw)
    for test_id, reason in excluded.items():
        results[test_id] = ("skip", "not run, a Tempest defect (known-defects.txt): " + reason)
    os.makedirs(os.path.dirname(os.path.abspath(args.results)), exist_ok=True)
    with open(args.results, "w", encoding="utf-8") as f:
        for test_id in sorted(results):
            status, reason = results[test_id]
            f.write("%s\t%s\t%s\n" % (test_id, status, reason.replace("\t", " ")))

    counts = {"pass": 0, "fail": 0, "skip": 0}
    for status, _ in results.values():
        counts[status] += 1
    missed = sorted(t for t in expected if t in results and results[t][0] != "pass")
    new = sorted(t for t, (status, _) in results.items() if status == "pass" and t not in expected)
    for test_id in missed:
        log("EXPECTED TO PASS, did not: %s: %s %s" % (test_id, results[test_id][0],
                                                      results[test_id][1]))
    for test_id in new:
        log("passes, not yet in the expected list: %s" % test_id)
    if args.update_expected and new:
        with open(args.expected, "a", encoding="utf-8") as f:
            f.write("".join(t + "\n" for t in new))
        log("added %d tests to %s" % (len(new), args.expected))
    # Deliberately not the "N passed, N failed" form: tests outside the expected list are allowed
    # to fail, and only the expected ones decide the exit status.
    log("tempest.api.volume: %d pass, %d fail, %d skip of %d run; results in %s" %
        (counts["pass"], counts["fail"], counts["skip"], len(results), args.results))
    log("expected to pass: %d, of which %d did not" % (len(expected & set(results)), len(missed)))
    return 1 if missed else 0


def main():
    args = parse_args()
    work_dir = tempfile.mkdtemp(prefix="clinker-tempest-")
    try:
        return run(args, work_dir)
    except (AssertionError, OSError, subprocess.SubprocessError) as error:
        log("the run could not be made: %s" % error)
        return 2
    finally:
        if args.keep:
            log("kept %s" % work_dir)
        else:
            shutil.rmtree(work_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
