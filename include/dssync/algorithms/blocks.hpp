#pragma once
/// \file
/// The public building blocks of plans (`dssync::algorithms::blocks`): ring, chain and tree over a member
/// list, weighted partitions of a range, and composition of sub-plans (phases in sequence with `then`,
/// channels side by side with `beside`, a group's plan on members of a larger world with `embed`). A new policy is a short composition of these.

#include "dssync/algorithms/blocks/chain.hpp"
#include "dssync/algorithms/blocks/compose.hpp"
#include "dssync/algorithms/blocks/embed.hpp"
#include "dssync/algorithms/blocks/partition.hpp"
#include "dssync/algorithms/blocks/ring.hpp"
#include "dssync/algorithms/blocks/tree.hpp"
