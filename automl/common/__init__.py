"""What every service of the suite needs: settings, the server factory, the
error map, logging, outgoing channels. Knows nothing of any one service."""
