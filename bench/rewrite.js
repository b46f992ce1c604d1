// The nginx + njs reference rewrite: parse the body, map the top-level model, serialise.
// bench/run.sh substitutes the map (the bench team's exact rules).
var MAP = __MAP__;

function body(r) {
    var text = r.requestText;
    if (!text) {
        return "";
    }
    var doc;
    try {
        doc = JSON.parse(text);
    } catch (e) {
        return text;
    }
    if (doc !== null && typeof doc === "object" && typeof doc.model === "string"
        && Object.prototype.hasOwnProperty.call(MAP, doc.model)) {
        doc.model = MAP[doc.model];
    }
    return JSON.stringify(doc);
}

export default { body };
