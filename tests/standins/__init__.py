"""Stand-in servers that tests start on 127.0.0.1 in place of the real clouds the service uses."""
