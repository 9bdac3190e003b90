-- One fixed request, repeated: wrk -s request.lua URL -- METHOD BODY_FILE|- [HEADER: value]...
dofile(os.getenv("BENCH_WRK_DIR") .. "/report.lua")

local prepared

function init(args)
  local method, body = args[1], nil
  if args[2] ~= "-" then
    local file = assert(io.open(args[2], "rb"))
    body = file:read("*a")
    file:close()
  end
  local headers = {}
  for index = 3, #args do
    local name, value = string.match(args[index], "^([^:]+):%s*(.*)$")
    headers[name] = value
  end
  prepared = wrk.format(method, nil, headers, body)
end

function request()
  return prepared
end
