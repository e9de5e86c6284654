package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"

	"gopkg.in/yaml.v3"
)

// proxyConfig is the part of Istio's ProxyConfig that ztunnel reads, from
// the mesh config file's defaultConfig and from PROXY_CONFIG (which wins
// field by field; proxyMetadata maps are merged). Unknown fields are ignored,
// as they are by ztunnel: both documents are shared with other Istio
// components.
type proxyConfig struct {
	DiscoveryAddress *string           `yaml:"discoveryAddress"`
	ProxyAdminPort   *uint16           `yaml:"proxyAdminPort"`
	StatsPort        *uint16           `yaml:"statsPort"`
	Concurrency      *uint16           `yaml:"concurrency"`
	ProxyMetadata    map[string]string `yaml:"proxyMetadata"`

	// discoverySource names the document DiscoveryAddress came from, for
	// error messages.
	discoverySource string `yaml:"-"`
}

type meshConfig struct {
	DefaultConfig *proxyConfig `yaml:"defaultConfig"`
}

func (pc *proxyConfig) merge(o *proxyConfig, source string) {
	if o == nil {
		return
	}
	if o.DiscoveryAddress != nil {
		pc.DiscoveryAddress = o.DiscoveryAddress
		pc.discoverySource = source
	}
	if o.ProxyAdminPort != nil {
		pc.ProxyAdminPort = o.ProxyAdminPort
	}
	if o.StatsPort != nil {
		pc.StatsPort = o.StatsPort
	}
	if o.Concurrency != nil {
		pc.Concurrency = o.Concurrency
	}
	for k, v := range o.ProxyMetadata {
		if pc.ProxyMetadata == nil {
			pc.ProxyMetadata = make(map[string]string)
		}
		pc.ProxyMetadata[k] = v
	}
}

// proxyConfig reads the mesh config file (if it exists) and PROXY_CONFIG
// (if set and not empty) and merges them.
func (s *source) proxyConfig() *proxyConfig {
	pc := &proxyConfig{}
	data, err := s.readFile(meshConfigPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		s.fail(badVar("mesh config "+meshConfigPath, "%w", err))
	default:
		var mc meshConfig
		if err := yaml.Unmarshal(data, &mc); err != nil {
			s.fail(badVar("mesh config "+meshConfigPath, "%w", err))
		} else {
			pc.merge(mc.DefaultConfig, "mesh config")
		}
	}
	if v, ok := s.nonEmpty(envProxyConfig); ok {
		var env proxyConfig
		if err := yaml.Unmarshal([]byte(v), &env); err != nil {
			s.fail(badVar(envProxyConfig, "%w", err))
		} else {
			pc.merge(&env, envProxyConfig)
		}
	}
	return pc
}

func jsonValid(v string) bool {
	return json.Valid(bytes.TrimSpace([]byte(v)))
}
