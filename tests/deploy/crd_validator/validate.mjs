// Validate custom resources (JSON array on stdin) against the CRD schemas packaged by
// @kubernetes-models. Prints a JSON array of {kind, name, error}; error is null when valid.
import * as traefik from "@kubernetes-models/traefik/traefik.io/v1alpha1";
import * as monitoring from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";
import * as gateway from "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1";

const models = {
  "traefik.io/v1alpha1": traefik,
  "monitoring.coreos.com/v1": monitoring,
  "gateway.networking.k8s.io/v1": gateway,
};
const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const results = JSON.parse(Buffer.concat(chunks).toString()).map((object) => {
  const group = models[object.apiVersion];
  const Model = group && group[object.kind];
  if (!Model) return { kind: object.kind, name: object.metadata?.name, error: `no schema for ${object.apiVersion} ${object.kind}` };
  try {
    new Model(object).validate();
    return { kind: object.kind, name: object.metadata.name, error: null };
  } catch (e) {
    return { kind: object.kind, name: object.metadata.name, error: String(e.message || e) };
  }
});
process.stdout.write(JSON.stringify(results));
