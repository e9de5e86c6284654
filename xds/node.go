package xds

import (
	"encoding/json"
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"

	ztconfig "github.com/ztunnel-go/ztunnel/config"
)

// NodeFromConfig builds the xDS node ztunnel presents to istiod: the id
// "ztunnel~<ip>~<pod>.<ns>~<ns>.svc.cluster.local" and metadata NAME,
// NAMESPACE, INSTANCE_IPS and NODE_NAME, then the proxy metadata
// (ISTIO_META_*), then the ISTIO_METAJSON_* values as structured JSON.
func NodeFromConfig(cfg *ztconfig.Config) (*corev3.Node, error) {
	ip := ztconfig.DefaultNodeIP
	if cfg.InstanceIP.IsValid() {
		ip = cfg.InstanceIP.String()
	}
	fields := map[string]*structpb.Value{
		"NAME":         structpb.NewStringValue(cfg.PodName),
		"NAMESPACE":    structpb.NewStringValue(cfg.PodNamespace),
		"INSTANCE_IPS": structpb.NewStringValue(ip),
		"NODE_NAME":    structpb.NewStringValue(cfg.NodeName),
	}
	for k, v := range cfg.ProxyMetadata {
		fields[k] = structpb.NewStringValue(v)
	}
	for k, raw := range cfg.MetadataJSON {
		var v any
		if err := json.Unmarshal([]byte(raw), &v); err != nil {
			return nil, fmt.Errorf("ISTIO_METAJSON_%s: %w", k, err)
		}
		sv, err := structpb.NewValue(v)
		if err != nil {
			return nil, fmt.Errorf("ISTIO_METAJSON_%s: %w", k, err)
		}
		fields[k] = sv
	}
	return &corev3.Node{Id: cfg.XDSNodeID(), Metadata: &structpb.Struct{Fields: fields}}, nil
}
