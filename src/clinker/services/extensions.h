// The API extensions Clinker serves, as Cinder lists them (cinder/api/extensions.py): GET
// /extensions and GET /extensions/{alias}, every microversion, any authenticated caller.
//
// Only the extensions whose resources, actions or attributes this server has are listed, with
// Cinder's name, alias, description (the extension class's docstring) and updated date; links
// are always empty and there is no namespace, as in Cinder since the XML API went. A new
// resource that Cinder ships as an extension adds its row to the table in extensions.cc.
//
// Pure, thread safe.
#pragma once

#include <span>
#include <string_view>

#include "clinker/services/api_common.h"

namespace clinker::services {

struct ApiExtension {
  std::string_view name;
  std::string_view alias;
  std::string_view description;
  std::string_view updated;
};

std::span<const ApiExtension> ApiExtensions();

// {"extensions": [...]}.
HttpResponse ListExtensions();
// {"extension": {...}}, or 404 for an alias not served.
HttpResponse ShowExtension(std::string_view alias);

}  // namespace clinker::services
