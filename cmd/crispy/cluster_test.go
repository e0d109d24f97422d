package main

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/crispy-enigma/crispy/actors"
	"github.com/crispy-enigma/crispy/config"
	"github.com/crispy-enigma/crispy/internal/freeport"
)

// Regression: --cluster-host/--cluster-port were ignored without --cluster, so a single node's actor
// remote listened on a random port whatever was asked.
func TestStartMemberHonoursClusterListenerOnSingleNode(t *testing.T) {
	port := freeport.Port(t)
	tests := []struct {
		name string
		cs   config.Cluster
		want string
	}{
		{"fixed port", config.Cluster{Host: "127.0.0.1", Port: port}, net.JoinHostPort("127.0.0.1", strconv.Itoa(port))},
		{"advertised", config.Cluster{Host: "127.0.0.1", AdvertisedHost: "10.0.0.9:7000"}, "10.0.0.9:7000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			node, err := startMember(ctx, config.Env{NodeName: "single", Cluster: tt.cs}, nil, actors.Deps{Logger: zerolog.Nop()}, zerolog.Nop())
			if err != nil {
				t.Fatal(err)
			}
			defer node.Stop(false)
			if got := node.Address(); got != tt.want {
				t.Errorf("member address %q, want %q", got, tt.want)
			}
		})
	}
}
