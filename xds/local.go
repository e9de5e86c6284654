package xds

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"

	"gopkg.in/yaml.v3"

	"github.com/ztunnel-go/ztunnel/policy"
	"github.com/ztunnel-go/ztunnel/workload"
)

// LocalConfig is ztunnel's local (static) configuration file.
type LocalConfig struct {
	Workloads []LocalWorkload         `yaml:"workloads"`
	Policies  []*policy.Authorization `yaml:"policies"`
	Services  []*workload.Service     `yaml:"services"`
}

// LocalWorkload is a workload plus the services it is an endpoint of, as
// ztunnel's local config writes it: every Workload field inline, and
// "services" in map form, "namespace/hostname" -> service port -> target
// port. (workload.Workload has no YAML "services" key, so the map is the
// only meaning the key has here.) It is decoded from YAML only: JSON would
// reach the embedded Workload's UnmarshalJSON and drop Services.
type LocalWorkload struct {
	workload.Workload `yaml:",inline"`
	Services          map[string]map[uint16]uint16 `yaml:"services"`
}

// UnmarshalYAML decodes with ztunnel's defaults (capacity 1). It uses the
// function form so the caller's strict-field setting applies inside.
func (l *LocalWorkload) UnmarshalYAML(unmarshal func(any) error) error {
	type localWorkload LocalWorkload // same fields, no UnmarshalYAML
	v := localWorkload{Workload: workload.Workload{Capacity: 1}}
	if err := unmarshal(&v); err != nil {
		return err
	}
	*l = LocalWorkload(v)
	return nil
}

// ParseLocalConfig decodes a local config strictly: unknown fields are
// errors naming the field and line. Empty input is an empty config. It
// does not validate the resources; Update and LoadLocal do.
func ParseLocalConfig(data []byte) (*LocalConfig, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var c LocalConfig
	if err := dec.Decode(&c); err != nil {
		if errors.Is(err, io.EOF) {
			return &c, nil
		}
		return nil, fmt.Errorf("local config: %w", err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, fmt.Errorf("local config: %w", err)
		}
		return nil, fmt.Errorf("local config: line %d: a second YAML document is not supported", extra.Line)
	}
	return &c, nil
}

// Update converts the config into a store update, without validating the
// resources themselves (the store does). It fails on what only the local
// format can get wrong: a malformed services key, or two resources with the
// same key. The update shares nothing mutable with c.
func (c *LocalConfig) Update() (workload.Update, error) {
	var u workload.Update
	var errs []error
	uids := map[string]int{}
	for i := range c.Workloads {
		w, err := convertWorkload(&c.Workloads[i])
		if err != nil {
			errs = append(errs, fmt.Errorf("workloads[%d] (uid %q): %w", i, w.UID, err))
			continue
		}
		if j, dup := uids[w.UID]; dup {
			errs = append(errs, fmt.Errorf("workloads[%d]: uid %q already used by workloads[%d]", i, w.UID, j))
			continue
		}
		uids[w.UID] = i
		u.Workloads = append(u.Workloads, w)
	}
	keys := map[string]int{}
	for i, s := range c.Services {
		if s == nil {
			errs = append(errs, fmt.Errorf("services[%d] is null", i))
			continue
		}
		if j, dup := keys[s.Key()]; dup {
			errs = append(errs, fmt.Errorf("services[%d]: %q already defined by services[%d]", i, s.Key(), j))
			continue
		}
		keys[s.Key()] = i
		u.Services = append(u.Services, convertService(s))
	}
	pkeys := map[string]int{}
	for i, p := range c.Policies {
		if p == nil {
			errs = append(errs, fmt.Errorf("policies[%d] is null", i))
			continue
		}
		if j, dup := pkeys[p.Key()]; dup {
			errs = append(errs, fmt.Errorf("policies[%d]: %q already defined by policies[%d]", i, p.Key(), j))
			continue
		}
		pkeys[p.Key()] = i
		cp := *p
		u.Policies = append(u.Policies, &cp)
	}
	return u, errors.Join(errs...)
}

// convertWorkload turns a LocalWorkload into the store's form: its services
// map becomes Services (sorted) and ServicePorts.
func convertWorkload(lw *LocalWorkload) (*workload.Workload, error) {
	w := lw.Workload
	w.WorkloadIPs = slices.Clone(w.WorkloadIPs)
	w.AuthorizationPolicies = slices.Clone(w.AuthorizationPolicies)
	w.Services, w.ServicePorts = nil, nil
	for _, k := range slices.Sorted(maps.Keys(lw.Services)) {
		n, err := workload.ParseNamespacedHostname(k)
		if err != nil {
			return &w, fmt.Errorf("services: %w", err)
		}
		w.Services = append(w.Services, n)
		if ports := lw.Services[k]; len(ports) > 0 {
			if w.ServicePorts == nil {
				w.ServicePorts = make(map[workload.NamespacedHostname]map[uint16]uint16, len(lw.Services))
			}
			w.ServicePorts[n] = maps.Clone(ports)
		}
	}
	return &w, nil
}

// convertService copies a service so the store may own it.
func convertService(s *workload.Service) *workload.Service {
	c := *s
	c.VIPs = slices.Clone(s.VIPs)
	c.CIDRVIPs = slices.Clone(s.CIDRVIPs)
	c.Ports = maps.Clone(s.Ports)
	c.SubjectAltNames = slices.Clone(s.SubjectAltNames)
	if s.Endpoints != nil {
		c.Endpoints = make(map[string]*workload.Endpoint, len(s.Endpoints))
		for uid, ep := range s.Endpoints {
			if ep != nil {
				e := *ep
				ep = &e
			}
			c.Endpoints[uid] = ep
		}
	}
	return &c
}

// LoadLocal parses data and replaces the store's whole configuration with
// it. Any error — syntax, unknown field, invalid resource — leaves the
// store untouched.
func LoadLocal(store *workload.Store, data []byte) error {
	c, err := ParseLocalConfig(data)
	if err != nil {
		return err
	}
	u, err := c.Update()
	if err != nil {
		return fmt.Errorf("local config: %w", err)
	}
	if err := u.Validate(); err != nil {
		return fmt.Errorf("local config: %w", err)
	}
	if err := store.Replace(u); err != nil {
		return fmt.Errorf("local config: %w", err)
	}
	return nil
}
