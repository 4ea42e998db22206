#pragma once
/// \file
/// Opt-in umbrella: the core (dssync/dssync.hpp) plus the flow-level network simulator (`sim::simulate`),
/// its routing and scenarios (background flows, capped NICs), Chrome-trace timelines, and the simulated
/// transport (`transport::sim`: real data, virtual time).

#include "dssync/dssync.hpp"

#include "dssync/sim/flow_engine.hpp"
#include "dssync/sim/routing.hpp"
#include "dssync/sim/scenario.hpp"
#include "dssync/sim/simulator.hpp"
#include "dssync/sim/timeline.hpp"
#include "dssync/transport/sim.hpp"
