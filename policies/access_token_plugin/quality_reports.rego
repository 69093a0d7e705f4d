# Token authentication for quality_reports: asked in addition to data.quality_reports.allow
# when the request is authenticated with an access token (input.auth.token).
# No table covers tokens yet, so every request is denied (policies/README.md,
# "Packages outside the tables").
package access_token_plugin.quality_reports

import rego.v1

default allow := false
