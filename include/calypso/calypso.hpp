// Calypso-DSM public API: include this one header.
#pragma once

#include <calypso/error.hpp>
#include <calypso/manager.hpp>
#include <calypso/routine.hpp>
#include <calypso/runtime.hpp>
#include <calypso/segment.hpp>
#include <calypso/shared.hpp>
