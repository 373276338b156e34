// user_directory_bench: UserDirectory (issue 17, seed 004's UserManager) with N users (100 000
// by default: French names with accents, 20 % doctors with a specialty, emails), on RedisBackend
// and MemoryBackend:
//   - load: async_store_user from --callers concurrent callers (users/s);
//   - search: async_search_users from one caller, cycling over a fixed mix of queries (short and
//     long prefixes, exact names, accented and capitalised terms, two and three terms, a term
//     that matches nothing), --queries searches per run: p50 / p99 per search;
//   - memory (RedisBackend): INFO used_memory after the load minus before, per user, and the
//     index entries per user (ZCARD of the index keys).
// Output lines:
//   system=rediskit-redis workload=load_100000 ops_per_s=... seconds=...
//   system=rediskit-redis workload=search_100000 ops_per_s=... p50_us=... p99_us=... max_us=...
//     worst_query=... worst_p99_us=... searches=...
//   system=rediskit-redis workload=memory_100000 bytes_per_user=... index_entries_per_user=...
//
// Usage: user_directory_bench [--host H] [--port P] [--repeat R] [--callers N] [--users N]
//                             [--queries N] [--limit N] [--cap N] [--backends redis,memory]
//                             [--load 0] [--query Q]
// (--cap: candidates_per_term; --load 0: search what an earlier run stored; --query Q: that
// query alone, both types. USER_DIRECTORY_BENCH_VERBOSE=1 prints p50 / p99 per query.)
// (host and port default to REDIS_HOST / REDIS_PORT, else 127.0.0.1:6379). It writes the
// directory's keys (messaging:user:*, messaging:users:*): use a throwaway server
// (benchmarks/run_user_directory.sh), which starts empty (the memory figure assumes it).

#include <rediskit/backend/memory_backend.hpp>
#include <rediskit/backend/redis_backend.hpp>
#include <rediskit/services/user_directory.hpp>

#include "bench_util.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <map>
#include <string>
#include <vector>

namespace asio = boost::asio;
using namespace rediskit;
using SteadyTime = std::chrono::steady_clock;

namespace {

using bench_util::percentile;
using bench_util::split;

struct Options : bench_util::CommonOptions {
  int users = 100000;
  int queries = 5000;
  std::int64_t limit = 20;
  std::int64_t cap = 50;   // UserDirectoryOptions::candidates_per_term
  bool load = true;        // --load 0: search what an earlier run stored
  std::string only;        // --query Q: search Q (both types) instead of the mix
  std::vector<std::string> backends{"redis", "memory"};
};

char const* const kNoms[] = {
    "Martin",   "Bernard",  "Dubois",   "Thomas",   "Robert",   "Richard",  "Petit",
    "Durand",   "Leroy",    "Moreau",   "Simon",    "Laurent",  "Lefèvre",  "Michel",
    "Garcia",   "David",    "Bertrand", "Roux",     "Vincent",  "Fournier", "Morel",
    "Girard",   "André",    "Lefebvre", "Mercier",  "Dupont",   "Lambert",  "Bonnet",
    "François", "Martinez", "Legrand",  "Garnier",  "Faure",    "Rousseau", "Blanc",
    "Guérin",   "Muller",   "Henry",    "Roussel",  "Nicolas",  "Perrin",   "Morin",
    "Mathieu",  "Clément",  "Gauthier", "Dumont",   "Lopez",    "Fontaine", "Chevalier",
    "Robin",    "Masson",   "Sanchez",  "Gérard",   "Nguyen",   "Boyer",    "Denis",
    "Lemaire",  "Duval",    "Joly",     "Gautier",  "Roger",    "Roche",    "Roy",
    "Noël",     "Meyer",    "Lucas",    "Meunier",  "Jean",     "Pérez",    "Marchand",
    "Dufour",   "Blanchard","Marie",    "Barbier",  "Brun",     "Dumas",    "Brunet",
    "Schmitt",  "Leroux",   "Colin",    "Fernandez","Pierre",   "Renard",   "Arnaud",
    "Rolland",  "Caron",    "Aubert",   "Giraud",   "Leclerc",  "Vidal",    "Bourgeois",
    "Renaud",   "Lemoine",  "Picard",   "Gaillard", "Philippe", "Leclercq", "Lacroix",
    "Fabre",    "Dupuis",   "Olivier",  "Rodriguez","Da Silva", "Hubert",   "Louis",
    "Charles",  "Guillot",  "Rivière",  "Le Gall",  "Guillaume","Adam",     "Rey",
    "Moulin",   "Gonzalez", "Berger",   "Lecomte",  "Ménard",   "Fleury",   "Deschamps",
    "Carpentier","Julien",  "Benoît",   "Paris",    "Maillard", "Marchal",  "Aubry",
    "Vasseur",  "Le Roux",  "Renault",  "Jacquet",  "Collet",   "Prévost",  "Poirier",
    "Charpentier","Royer",  "Huet",     "Baron",    "Dupuy",    "Pons",     "Paul",
    "Laine",    "Carré",    "Breton",   "Rémy",     "Schneider","Perrot",   "Guyot",
    "Barre",    "Marty",    "Cousin",   "Molowa",   "Sakura",   "Helm",     "Hélias"};
char const* const kPrenoms[] = {
    "Hélène",  "Léa",      "Chloé",   "Zoé",     "Noémie",  "Jérôme",  "François", "Jean",
    "Marie",   "Camille",  "Louise",  "Emma",    "Inès",    "Manon",   "Sarah",    "Juliette",
    "Anaïs",   "Clémence", "Océane",  "Maëlle",  "Gaël",    "Loïc",    "Benoît",   "Stéphane",
    "Frédéric","Sébastien","Rémi",    "Théo",    "Lucas",   "Hugo",    "Nathan",   "Léo",
    "Raphaël", "Arthur",   "Louis",   "Gabriel", "Jules",   "Adam",    "Paul",     "Éric",
    "Émilie",  "Agnès",    "Cécile",  "Thérèse", "Geneviève","Françoise","Hervé",  "Andrée",
    "Saza",    "Essonga",  "Björn",   "Øyvind",  "Łukasz",  "Ærin",    "Hélio",    "Helga",
    "Marc",    "Luc",      "Anne",    "Claire"};
char const* const kSpecialites[] = {
    "Cardiologie",   "Dermatologie",  "Pédiatrie",      "Médecine générale", "Neurologie",
    "Gynécologie",   "Ophtalmologie", "Psychiatrie",    "Radiologie",        "Rhumatologie",
    "Hématologie",   "Oncologie",     "Endocrinologie", "Gastro-entérologie", "Néphrologie",
    "Pneumologie",   "Urologie",      "Anesthésie",     "Chirurgie orthopédique", "ORL"};
char const* const kDomains[] = {"chu-paris.fr", "gmail.com", "orange.fr", "laposte.net",
                                "clinique-sud.fr"};

template <class T, std::size_t N>
constexpr std::size_t count(T const (&)[N]) {
  return N;
}

struct Generated {
  std::string id;
  char const* type;
  DirectoryProfile profile;
};

Generated user(int i) {
  auto const u = static_cast<unsigned>(i) * 2654435761u;  // spread the combinations
  std::string const nom = kNoms[u % count(kNoms)];
  std::string const prenom = kPrenoms[(u / 151) % count(kPrenoms)];
  bool const doctor = i % 5 == 0;
  std::string email = detail::text::fold(prenom) + "." + detail::text::fold(nom) +
                      std::to_string(i % 1000) + "@" + kDomains[(u / 7) % count(kDomains)];
  std::replace(email.begin(), email.end(), ' ', '-');
  std::optional<std::string> spec;
  if (doctor) spec = kSpecialites[(u / 13) % count(kSpecialites)];
  return {std::to_string(i), doctor ? "medecin" : "patient",
          DirectoryProfile(nom, prenom, std::move(email), std::move(spec), "0600000000")};
}

struct Query {
  char const* text;
  char const* type;
};
Query const kQueries[] = {
    {"mar", ""},           {"hel", ""},        {"hélène", ""},          {"HÉLÈNE", "patient"},
    {"dupont", ""},        {"lefèvre", ""},    {"cardio", "medecin"},   {"jean dupont", ""},
    {"chloé m", ""},       {"pédiatrie", ""},  {"gmail", ""},           {"zo", ""},
    {"noemie", "patient"}, {"ber", ""},        {"françois lefèvre cardiologie", ""},
    {"xyzzy", ""},         {"ma", ""},         {"martin marie", ""},    {"le", "medecin"},
    {"clinique", ""}};

void usage() {
  std::fprintf(stderr,
               "usage: user_directory_bench [--host H] [--port P] [--repeat R] [--callers N] "
               "[--users N] [--queries N] [--limit N] [--cap N] [--backends redis,memory] "
               "[--load 0] [--query Q]\n");
  std::exit(2);
}

template <class B>
void bench(Options const& o, asio::io_context& ioc, B& backend, std::string const& system) {
  UserDirectoryOptions opts;
  opts.candidates_per_term = o.cap;
  UserDirectory<B> dir(backend, opts);
  std::string const n = std::to_string(o.users);
  std::int64_t used_before = 0;
  auto used_memory = [&]() -> asio::awaitable<std::int64_t> {
    std::string const info = co_await backend.async_exec(cmd::info{"memory"});
    auto const at = info.find("used_memory:");
    co_return at == std::string::npos ? 0 : std::atoll(info.c_str() + at + 12);
  };
  if constexpr (std::is_same_v<B, RedisBackend>)
    bench_util::run_coro(ioc, [&]() -> asio::awaitable<void> {
      used_before = co_await used_memory();
    });

  // Load.
  if (o.load) {
    auto const t0 = SteadyTime::now();
    bench_util::run_concurrently(ioc, o.callers, [&](int k) {
      return [&, k]() -> asio::awaitable<void> {
        for (int i = k; i < o.users; i += o.callers) {
          Generated const g = user(i);
          co_await dir.async_store_user(g.id, g.type, g.profile);
        }
      };
    });
    double const load_s = std::chrono::duration<double>(SteadyTime::now() - t0).count();
    std::printf("system=%s workload=load_%s ops_per_s=%.0f seconds=%.2f\n", system.c_str(),
                n.c_str(), o.users / load_s, load_s);
    std::fflush(stdout);

    if constexpr (std::is_same_v<B, RedisBackend>) {
      bench_util::run_coro(ioc, [&]() -> asio::awaitable<void> {
        std::int64_t const after = co_await used_memory();
        std::int64_t const entries =
            co_await backend.async_exec(cmd::zcard{dir.index_key("medecin")}) +
            co_await backend.async_exec(cmd::zcard{dir.index_key("patient")});
        std::printf("system=%s workload=memory_%s bytes_per_user=%.0f index_entries_per_user=%.1f\n",
                    system.c_str(), n.c_str(), double(after - used_before) / o.users,
                    double(entries) / o.users);
      });
    }
  }

  // Searches, one caller; one warm-up pass over the mix.
  std::vector<double> all;
  std::map<std::string, std::vector<double>> by_query;
  std::size_t hits = 0;
  double busy = 0;
  for (int run = -1; run < o.repeat; ++run) {
    bench_util::run_coro(ioc, [&]() -> asio::awaitable<void> {
      int const total = run < 0 ? int(count(kQueries)) : o.queries;
      for (int i = 0; i < total; ++i) {
        Query const& q =
            o.only.empty() ? kQueries[i % count(kQueries)] : Query{o.only.c_str(), ""};
        auto const s = SteadyTime::now();
        std::vector<UserMatch> r = co_await dir.async_search_users(q.text, q.type, o.limit);
        double const us = std::chrono::duration<double, std::micro>(SteadyTime::now() - s).count();
        if (run < 0) continue;
        hits += r.size();
        busy += us;
        all.push_back(us);
        by_query[std::string(q.text) + "/" + q.type].push_back(us);
      }
    });
  }
  std::sort(all.begin(), all.end());
  std::string worst;
  double worst_p99 = 0;
  bool const verbose = std::getenv("USER_DIRECTORY_BENCH_VERBOSE") != nullptr;
  for (auto& [q, v] : by_query) {
    std::sort(v.begin(), v.end());
    if (verbose)
      std::printf("  query=%s p50_us=%.1f p99_us=%.1f\n", q.c_str(), percentile(v, 50),
                  percentile(v, 99));
    if (percentile(v, 99) > worst_p99) {
      worst_p99 = percentile(v, 99);
      worst = q;
    }
  }
  std::replace(worst.begin(), worst.end(), ' ', '+');
  std::printf(
      "system=%s workload=search_%s ops_per_s=%.0f p50_us=%.1f p99_us=%.1f max_us=%.1f "
      "worst_query=%s worst_p99_us=%.1f mean_hits=%.1f searches=%zu\n",
      system.c_str(), n.c_str(), all.size() / (busy / 1e6), percentile(all, 50),
      percentile(all, 99), all.empty() ? 0.0 : all.back(), worst.c_str(), worst_p99,
      all.empty() ? 0.0 : double(hits) / double(all.size()), all.size());
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) try {
  Options o;
  bench_util::parse_pairs(
      argc, argv,
      [&](std::string const& a, std::string const& v) {
        if (o.take(a, v)) return true;
        if (a == "--users")
          o.users = std::stoi(v);
        else if (a == "--queries")
          o.queries = std::stoi(v);
        else if (a == "--query")
          o.only = v;
        else if (a == "--load")
          o.load = v != "0";
        else if (a == "--cap")
          o.cap = std::stoll(v);
        else if (a == "--limit")
          o.limit = std::stoll(v);
        else if (a == "--backends")
          o.backends = split(v);
        else
          return false;
        return true;
      },
      usage);
  if (!o.valid() || o.users < 1 || o.queries < 1 || o.limit < 1 || o.limit > 100) usage();
  asio::io_context ioc;
  for (auto const& b : o.backends) {
    if (b == "redis") {
      RedisConfig cfg;
      cfg.host = o.host;
      cfg.port = o.port;
      RedisBackend db(ioc, cfg);
      bench(o, ioc, db, "rediskit-redis");
    } else if (b == "memory") {
      MemoryBackend db(ioc);
      bench(o, ioc, db, "rediskit-memory");
    } else {
      usage();
    }
  }
  return 0;
} catch (std::exception const& e) {
  std::fprintf(stderr, "user_directory_bench: %s\n", e.what());
  return 1;
}
