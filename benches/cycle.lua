-- wrk script: cycles request bodies from $BODIES, one "path<TAB>body" a line.
local entries = {}
for line in io.lines(os.getenv("BODIES")) do
  local path, body = line:match("^([^\t]+)\t(.*)$")
  if path then entries[#entries + 1] = { path, body } end
end
local i = 0
request = function()
  i = i % #entries + 1
  local e = entries[i]
  return wrk.format("POST", e[1], { ["Content-Type"] = "application/json" }, e[2])
end
