# cmdb.rake — report each finished deployment to cmdbd as a manifest (source
# "capistrano:<service>") with Ruby's standard library only (Net::HTTP, JSON).
#
#   CMDB_URL    server base URL (default http://127.0.0.1:8080)
#   CMDB_TOKEN  a write token allowed to write source capistrano:<service>
#   CMDB_PLAN=1 ask for a dry run (?dry_run=true): print the plan, change nothing
#
# The source's next manifest replaces what it asserted before, so a dependency removed
# from :cmdb_dependencies disappears from the map on the next deploy.
require "json"
require "net/http"
require "time"
require "uri"

module CmdbNotify
  EDGE_TYPES = %w[depends_on runs_on connects_to part_of owned_by].freeze

  module_function

  # "REF" -> ["depends_on", REF]; "TYPE=REF" -> [TYPE, REF]. A kind never contains "=",
  # so a name with "=" in it stays part of the ref.
  def parse_dep(spec)
    type, sep, ref = spec.partition("=")
    sep.empty? || !EDGE_TYPES.include?(type) ? ["depends_on", spec] : [type, ref]
  end

  def ref(value, kind)
    value.include?("/") ? value : "#{kind}/#{value}"
  end

  def rfc3339(t)
    t.utc.strftime("%Y-%m-%dT%H:%M:%SZ")
  end

  # The manifest as a Hash (schema/manifest-v1.schema.json).
  def manifest(service:, version:, revision:, environment:, actor:, hosts:, deps:, team:,
               system:, started:, finished:)
    node = "service/#{service}"
    edges = hosts.map { |h| { from: node, type: "runs_on", to: ref(h, "host") } }
    deps.each do |spec|
      type, to = parse_dep(spec)
      edges << { from: node, type: type, to: to }
    end
    edges << { from: node, type: "part_of", to: ref(system, "system") } unless system.to_s.empty?
    edges << { from: node, type: "owned_by", to: ref(team, "team") } unless team.to_s.empty?
    {
      manifest: "cmdb/v1",
      source: "capistrano:#{service}",
      # Microseconds since the epoch: a later deploy always supersedes an earlier one,
      # even when an old manifest is delivered late.
      generation: (Time.now.to_r * 1_000_000).to_i,
      deployment: { node: node, version: version, revision: revision,
                    environment: environment, actor: actor, status: "succeeded",
                    started_at: rfc3339(started), finished_at: rfc3339(finished) },
      nodes: [{ ref: node, labels: { env: environment },
                attributes: { version: version, revision: revision,
                              deployed_at: rfc3339(finished), deployed_with: "capistrano" } }],
      edges: edges
    }
  end

  # POST it; return the parsed report, or abort (exit 1) with the server's reason.
  def post(base_url, token, manifest, plan: false)
    uri = URI.join(base_url.end_with?("/") ? base_url : "#{base_url}/", "v1/manifests")
    uri.query = "dry_run=true" if plan
    req = Net::HTTP::Post.new(uri)
    req["Authorization"] = "Bearer #{token}"
    req["Content-Type"] = "application/json"
    req["Accept"] = "application/json"
    req["Idempotency-Key"] = "#{manifest[:source]}:#{manifest[:generation]}"
    req.body = JSON.generate(manifest)
    res = Net::HTTP.start(uri.host, uri.port, use_ssl: uri.scheme == "https",
                                              open_timeout: 10, read_timeout: 30) do |http|
      http.request(req)
    end
    abort "cmdb: #{uri} refused the manifest: HTTP #{res.code} #{reason(res)}" unless res.is_a?(Net::HTTPSuccess)
    JSON.parse(res.body)
  rescue SystemCallError, SocketError, Net::OpenTimeout, Net::ReadTimeout => e
    abort "cmdb: cannot reach #{uri}: #{e.message}"
  end

  def reason(res)
    err = JSON.parse(res.body.to_s).fetch("error")
    text = "#{err['code']}: #{err['message']}"
    err["details"].nil? ? text : "#{text} (details: #{JSON.generate(err['details'])})"
  rescue JSON::ParserError, KeyError, TypeError, NoMethodError
    res.body.to_s.strip[0, 500]
  end

  def print_report(source, report, plan)
    n = report.fetch("nodes", {})
    e = report.fetch("edges", {})
    puts "cmdb: #{plan ? 'would apply (dry run)' : 'applied'} #{source}: " \
         "deployment #{report['deployment_id']} seq #{report['seq']}"
    puts "cmdb:   nodes created #{n['created'].to_i} updated #{n['updated'].to_i} " \
         "unchanged #{n['unchanged'].to_i}"
    puts "cmdb:   edges created #{e['created'].to_i} updated #{e['updated'].to_i} " \
         "removed #{e['removed'].to_i} unchanged #{e['unchanged'].to_i}"
    orphaned = Array(report["orphaned"])
    puts "cmdb:   orphaned: #{orphaned.join(', ')}" unless orphaned.empty?
    puts JSON.pretty_generate(report)
  end
end

namespace :cmdb do
  task :mark_start do
    set :cmdb_started_at, Time.now
  end

  desc "Send this service's manifest to cmdbd (runs after deploy:finished)"
  task :notify do
    token = ENV["CMDB_TOKEN"].to_s
    abort "cmdb: CMDB_TOKEN is not set (a write token for capistrano:#{fetch(:cmdb_service)})" if token.empty?

    hosts = fetch(:cmdb_hosts)
    if hosts.empty?
      hosts = roles(:app).map { |s| s.properties.cmdb_ref || "host/#{s.hostname}" }
    end
    manifest = CmdbNotify.manifest(
      service: fetch(:cmdb_service), version: fetch(:cmdb_version),
      revision: fetch(:current_revision) ||
                Capistrano::SCM::LocalDir.revision_of(fetch(:local_source_dir)),
      environment: fetch(:cmdb_environment),
      actor: ENV["USER"] || ENV["LOGNAME"] || "capistrano",
      hosts: hosts, deps: fetch(:cmdb_dependencies),
      team: fetch(:cmdb_team), system: fetch(:cmdb_system),
      started: fetch(:cmdb_started_at, Time.now), finished: Time.now
    )
    plan = %w[1 true yes].include?(ENV["CMDB_PLAN"].to_s)
    report = CmdbNotify.post(ENV.fetch("CMDB_URL", "http://127.0.0.1:8080"), token, manifest,
                             plan: plan)
    CmdbNotify.print_report(manifest[:source], report, plan)
  end
end

before "deploy:starting", "cmdb:mark_start"
after "deploy:finished", "cmdb:notify"
