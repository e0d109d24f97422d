package main

import (
	"net/http"

	"github.com/crispy-enigma/crispy/cluster"
	"github.com/crispy-enigma/crispy/config"
	"github.com/crispy-enigma/crispy/console"
	"github.com/crispy-enigma/crispy/observe"
)

// operatorConsole builds the operator view of the admin listener (console.OperatorHandler): this
// node's members, every member's grains (asked over NATS), the streams and projector lag from
// JetStream, the per-tenant HTTP series from the metrics registry.
func operatorConsole(env config.Env, bb *backbone, node *cluster.Node, m *observe.Metrics) (http.Handler, func(), error) {
	c := node.Cluster()
	grains := console.NewGrainStats(bb.nc, "crispy.operator.grains."+clusterName(env.Cluster), env.NodeName, node.Address(),
		console.LocalGrains(c.ActorSystem), func() int { return len(node.Members()) })
	stop, err := grains.Serve()
	if err != nil {
		return nil, nil, err
	}
	return console.OperatorHandler(console.OperatorDeps{
		Node: env.NodeName, Token: env.AdminToken, Members: console.ProtoMembers(c), Grains: grains,
		JetStream: bb.js, Gatherer: m.Registry,
	}), stop, nil
}

// clusterName scopes the grain-stats subject, so clusters sharing one NATS do not answer each other.
func clusterName(cs config.Cluster) string {
	if cs.Name == "" {
		return "single"
	}
	return cs.Name
}
