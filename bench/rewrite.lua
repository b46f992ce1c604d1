-- The nginx + Lua reference rewrite, the OpenResty way: read the body, cjson.decode it,
-- map the top-level model exactly as bench/rewrite.js does, cjson.encode it, set it as
-- the request body; nginx then proxies it. bench/run.sh substitutes the map (the bench
-- team's exact rules, the same JSON text as for njs) and loads this file as a module, so
-- it is compiled once per worker (lua_code_cache is on by default).
local cjson = require("cjson.safe")

local MAP = assert(cjson.decode([[__MAP__]]), "bench/rewrite.lua: the map is not JSON")

local function body()
    ngx.req.read_body()
    local text = ngx.req.get_body_data()
    if not text then
        -- A body larger than client_body_buffer_size is spooled to a file.
        local path = ngx.req.get_body_file()
        if not path then
            return -- no body (a GET)
        end
        local f = assert(io.open(path, "rb"))
        text = f:read("*a")
        f:close()
    end
    local doc = cjson.decode(text)
    if doc == nil then
        return -- not JSON: passed on as it came, as njs does
    end
    if type(doc) == "table" and type(doc.model) == "string" and MAP[doc.model] ~= nil then
        doc.model = MAP[doc.model]
    end
    local out = cjson.encode(doc)
    if out then
        ngx.req.set_body_data(out)
    end
end

return { body = body }
