# Token authentication for projects: asked in addition to data.projects.allow
# when the request is authenticated with an access token (input.auth.token).
# No table covers tokens yet, so every request is denied (policies/README.md,
# "Packages outside the tables").
package access_token_plugin.projects

import rego.v1

default allow := false
