"""The stand-in's Flask app: the three services' blueprints behind the record-and-fault hook."""

from __future__ import annotations

from typing import TYPE_CHECKING

import flask

from tests.standins.openstack_cloud import glance, keystone, nova
from tests.standins.openstack_cloud.wire import EXTENSION, record_and_fault

if TYPE_CHECKING:
    from tests.standins.openstack_cloud.cloud import OpenStackCloud


def make_app(cloud: OpenStackCloud) -> flask.Flask:
    app = flask.Flask("openstack_standin")
    # Set before any rule is added: each rule takes the map's setting when it is added.
    app.url_map.strict_slashes = False
    app.extensions[EXTENSION] = cloud
    app.before_request(record_and_fault)
    for service in (keystone, nova, glance):
        app.register_blueprint(service.blueprint)
    return app
