"""Unit tests of ``queuejob.naming``: names derived from a QueueJob are valid and stable."""

from __future__ import annotations

import pathlib
import re

import yaml
from hypothesis import given
from op_strategies import admitted_queuejob_name, queuejob_name

from queuejob import jobs, naming

ROOT = pathlib.Path(__file__).resolve().parents[2]

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN_PART = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)

queuejob_names = queuejob_name


def _valid_subdomain(name: str, limit: int) -> bool:
    return len(name) <= limit and bool(_DNS_SUBDOMAIN_PART.match(name))


@given(queuejob_names)
def test_job_name_is_a_valid_name_of_at_most_63_chars(name: str) -> None:
    job = naming.job_name(name)
    # The Job controller copies the Job name into a label value: <= 63 chars, alnum at the ends.
    assert _valid_subdomain(job, 63), job
    assert job.endswith("-workers")


@given(queuejob_names)
def test_secret_name_is_a_valid_subdomain(name: str) -> None:
    assert _valid_subdomain(naming.secret_name(name), 253)


@given(queuejob_names)
def test_short_names_are_kept_readable(name: str) -> None:
    if len(name) <= 55:
        assert naming.job_name(name) == f"{name}-workers"


@given(queuejob_names, queuejob_names)
def test_distinct_names_give_distinct_job_names(a: str, b: str) -> None:
    if a != b:
        assert naming.job_name(a) != naming.job_name(b)


def test_long_names_are_shortened_with_a_stable_hash() -> None:
    long = "a" * 50 + "-" + "b" * 20
    first = naming.job_name(long)
    assert first == naming.job_name(long)
    assert len(first) == 63
    assert first.startswith("a" * 46)
    # two long names sharing the kept prefix still differ
    assert naming.job_name(long + "c") != first


def test_shortening_never_leaves_a_dash_or_dot_before_the_hash() -> None:
    # the cut falls right after the "-" / "." run
    name = "a" * 45 + "-.-" + "z" * 30
    job = naming.job_name(name)
    assert _DNS_LABEL.match(job.replace(".", "x")), job
    assert "--" not in job.removesuffix("-workers")


def test_queue_name_uses_namespace_name_and_uid_prefix() -> None:
    uid = "0a1b2c3d-4e5f-6789-abcd-ef0123456789"
    assert naming.queue_name("ns", "job", uid) == "qj:ns:job:0a1b2c3d"
    other = "ffffffff-4e5f-6789-abcd-ef0123456789"
    assert naming.queue_name("ns", "job", other) != naming.queue_name("ns", "job", uid)


@given(admitted_queuejob_name)
def test_pod_hostnames_of_the_indexed_job_are_dns_labels_for_every_admitted_name(name: str) -> None:
    # The API server rejects an Indexed Job whose "<job name>-<completions - 1>" is no DNS label.
    hostname = f"{naming.job_name(name)}-{jobs.MAX_PARALLELISM - 1}"
    assert len(hostname) <= 63 and _DNS_LABEL.match(hostname), hostname
    assert naming.job_name(name) == f"{name}-workers"


def test_crd_admits_exactly_the_names_and_parallelism_the_job_shape_allows() -> None:
    crd = yaml.safe_load((ROOT / "crds" / "queuejobs.workqueue.example.com.yaml").read_text())
    [version] = crd["spec"]["versions"]
    schema = version["schema"]["openAPIV3Schema"]
    # The name's own schema: a DNS label, no '.'; its length by a CEL rule whose message says
    # why the limit is what it is (a maxLength error could not).
    name = schema["properties"]["metadata"]["properties"]["name"]
    assert name["pattern"] == _DNS_LABEL.pattern
    [rule] = [r for r in schema["x-kubernetes-validations"] if "metadata.name" in r["rule"]]
    assert rule["rule"] == f"size(self.metadata.name) <= {naming.MAX_QUEUEJOB_NAME}"
    assert rule["fieldPath"] == ".metadata.name"
    assert f"at most {naming.MAX_QUEUEJOB_NAME} characters" in rule["message"]
    parallelism = schema["properties"]["spec"]["properties"]["parallelism"]
    assert parallelism["maximum"] == jobs.MAX_PARALLELISM
    longest = f"{naming.job_name('a' * naming.MAX_QUEUEJOB_NAME)}-{jobs.MAX_PARALLELISM - 1}"
    assert len(longest) == 63
