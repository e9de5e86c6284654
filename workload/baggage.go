package workload

import "strings"

// The baggage header (W3C Baggage) is how ztunnels tell each other who is at the other end of
// an HBONE tunnel when the address cannot: the client sends its workload's description with
// every CONNECT, and the server answers 200 with its own (ENABLE_RESPONSE_BAGGAGE). The keys are
// OpenTelemetry's resource attributes, as ztunnel writes them:
//
//	k8s.cluster.name         ClusterID
//	k8s.namespace.name       Namespace
//	k8s.<type>.name          WorkloadName (type: deployment, cronjob, pod or job)
//	service.name             CanonicalName
//	service.version          CanonicalRevision
//	cloud.region             Locality.Region
//	cloud.availability_zone  Locality.Zone

// Baggage returns the baggage header value that describes w: its non-empty fields among those
// above, in that order, joined by commas; "" when it has none. The store computes it once when
// it takes the workload in (normalizeWorkload), so sending it costs nothing per connection.
func (w *Workload) Baggage() string {
	if w.baggage != "" {
		return w.baggage
	}
	return w.makeBaggage()
}

func (w *Workload) makeBaggage() string {
	var b strings.Builder
	add := func(key, val string) {
		if val == "" {
			return
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(key)
		b.WriteByte('=')
		b.WriteString(val)
	}
	add("k8s.cluster.name", w.ClusterID)
	add("k8s.namespace.name", w.Namespace)
	if w.WorkloadName != "" {
		typ := w.WorkloadType
		if typ == "" {
			typ = "deployment" // the proto enum's zero value
		}
		add("k8s."+typ+".name", w.WorkloadName)
	}
	add("service.name", w.CanonicalName)
	add("service.version", w.CanonicalRevision)
	add("cloud.region", w.Locality.Region)
	add("cloud.availability_zone", w.Locality.Zone)
	return b.String()
}

// FromBaggage returns the workload a peer's baggage header v describes (see Baggage; several
// header fields are one list joined by commas), as
// ztunnel derives it for a peer it has no record of: a connection that came through another
// network's gateway. Any k8s.<deployment|cronjob|pod|job>.name gives WorkloadName, and members
// with other keys are ignored. The result has Derived set and no UID, name, address or
// identity: it is for telemetry only. It returns nil when the values name nothing.
//
// Members are split as W3C Baggage defines them (key=value, then ;properties, which are
// dropped), with the optional whitespace around keys and values trimmed; values are kept as
// sent (Kubernetes names need no percent-encoding, and ztunnel decodes none).
func FromBaggage(v string) *Workload {
	var w Workload
	for member := range strings.SplitSeq(v, ",") {
		member, _, _ = strings.Cut(member, ";")
		key, val, ok := strings.Cut(member, "=")
		if !ok {
			continue
		}
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		var field *string
		switch key {
		case "k8s.cluster.name":
			field = &w.ClusterID
		case "k8s.namespace.name":
			field = &w.Namespace
		case "k8s.deployment.name", "k8s.cronjob.name", "k8s.pod.name", "k8s.job.name":
			field = &w.WorkloadName
		case "service.name":
			field = &w.CanonicalName
		case "service.version":
			field = &w.CanonicalRevision
		case "cloud.region":
			field = &w.Locality.Region
		case "cloud.availability_zone":
			field = &w.Locality.Zone
		default:
			continue
		}
		*field = val // a later member of the same key wins, as in ztunnel
	}
	if w.makeBaggage() == "" {
		return nil // nothing named (or every name cleared by a later empty member)
	}
	w.Derived = true
	return &w
}
