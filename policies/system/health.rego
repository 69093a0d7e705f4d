# Health checks for `GET /health/live` and `GET /health/ready`: the daemon is
# live and ready whenever it serves a snapshot (it only binds after loading).
package system.health

import rego.v1

default live := true

default ready := true
