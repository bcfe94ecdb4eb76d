// Validate prometheus-operator resources (ServiceMonitor, PodMonitor) against
// the CRDs' own OpenAPI schemas, as bundled by @kubernetes-models/prometheus-operator.
// Reads a JSON array of resources on stdin; prints one line per invalid one and
// exits 1 if any is invalid, 2 if a kind is unknown.
//   node validate_crds.mjs MODULES_DIR < resources.json
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import path from "node:path";

const modules = process.argv[2];
const base = path.join(modules, "@kubernetes-models", "prometheus-operator",
                       "monitoring.coreos.com", "v1");
const resources = JSON.parse(readFileSync(0, "utf8"));
let status = 0;
for (const r of resources) {
  if (r.apiVersion !== "monitoring.coreos.com/v1") {
    console.log(`${r.kind}: not a monitoring.coreos.com/v1 resource`);
    status = 2;
    continue;
  }
  const mod = await import(pathToFileURL(path.join(base, `${r.kind}.js`)).href)
    .catch(() => null);
  if (mod === null || !(r.kind in mod)) {
    console.log(`${r.kind}: unknown kind`);
    status = 2;
    continue;
  }
  try {
    new mod[r.kind](r).validate();
    console.log(`${r.kind}/${r.metadata?.name}: valid`);
  } catch (err) {
    console.log(`${r.kind}/${r.metadata?.name}: ${err.message.replace(/\s+/g, " ")}`);
    status = Math.max(status, 1);
  }
}
process.exit(status);
