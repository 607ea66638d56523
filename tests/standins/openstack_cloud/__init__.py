"""A stand-in OpenStack (Keystone v3, Nova, Glance v2) served over HTTP on 127.0.0.1 for tests.

It speaks just enough of each API for openstacksdk and keystoneauth to talk to it as to a real
cloud: version discovery, password authentication with a service catalog, token validation,
Nova's server GET and createImage action, Glance's image list (with property and `in:`
filters and paging), GET, owner PATCH and DELETE. Snapshots move queued → saving → active
over a configurable time, and faults (error statuses, hangs, images that fail or never finish)
can be switched on from the test. Every request is recorded so tests can count what went on
the wire.

    with OpenStackCloud() as cloud:
        tenant = cloud.add_project("demo")
        server_id = cloud.add_server(tenant, name="web-1")
        token = cloud.issue_token(tenant, ["member"])
        driver = OpenStackDriver(**cloud.admin_credentials)
        identity = KeystoneAuth(**cloud.admin_credentials).authenticate(token)

cloud.py has OpenStackCloud, the state and the controls a test uses; model.py the records it
keeps. app.py builds the Flask app from one blueprint a service (keystone.py, nova.py,
glance.py); wire.py has what the services share: the request record, faults, error bodies
and the caller's token. Handlers reach the cloud through current_app.extensions.
"""

from tests.standins.openstack_cloud.cloud import (
    ADMIN_PASSWORD,
    ADMIN_PROJECT,
    ADMIN_USER,
    OpenStackCloud,
)
from tests.standins.openstack_cloud.glance import (
    GLANCE_DEFAULT_LIMIT,
    GLANCE_LIST_CONTROLS,
    GLANCE_MAX_LIMIT,
)
from tests.standins.openstack_cloud.keystone import DEFAULT_DOMAIN
from tests.standins.openstack_cloud.model import (
    CloudImage,
    CloudServer,
    Fault,
    ManualClock,
    Project,
    RecordedRequest,
    Token,
    User,
)
from tests.standins.openstack_cloud.nova import NOVA_MAX_MICROVERSION, SNAPSHOT_TASK_STATES
from tests.standins.openstack_cloud.wire import iso

__all__ = [
    "ADMIN_PASSWORD",
    "ADMIN_PROJECT",
    "ADMIN_USER",
    "DEFAULT_DOMAIN",
    "GLANCE_DEFAULT_LIMIT",
    "GLANCE_LIST_CONTROLS",
    "GLANCE_MAX_LIMIT",
    "NOVA_MAX_MICROVERSION",
    "SNAPSHOT_TASK_STATES",
    "CloudImage",
    "CloudServer",
    "Fault",
    "ManualClock",
    "OpenStackCloud",
    "Project",
    "RecordedRequest",
    "Token",
    "User",
    "iso",
]
