# config/deploy.rb — settings shared by every stage.
lock "~> 3.17"

set :application, ENV.fetch("CMDB_SERVICE", "storefront")
set :keep_releases, 5

# Airbrussh output on the terminal only; no log/capistrano.log in the working tree.
set :format_options, log_file: ENV["CAP_LOG_FILE"], color: :auto, truncate: :auto

# ---- what cmdb:notify reports (lib/capistrano/tasks/cmdb.rake) -----------------------
# Each can be overridden from the environment, which is how the end-to-end test drives a
# second deploy with one dependency fewer.
def env_list(name, default)
  ENV.key?(name) ? ENV[name].split(",").map(&:strip).reject(&:empty?) : default
end

set :cmdb_service, -> { fetch(:application) }
set :cmdb_version, ENV.fetch("CMDB_VERSION", "3.18.0")
set :cmdb_team, ENV.fetch("CMDB_TEAM", "team/web")
set :cmdb_system, ENV.fetch("CMDB_SYSTEM", "system/shop")
# REF (depends_on) or TYPE=REF (connects_to / runs_on).
set :cmdb_dependencies, env_list("CMDB_DEPS", %w[
  service/catalog
  service/cart
  cache/redis-sessions:6379
])
# Where the service runs, as refs; default: one host/<name> per app server.
set :cmdb_hosts, env_list("CMDB_HOSTS", [])
set :cmdb_environment, -> { ENV.fetch("CMDB_ENVIRONMENT", fetch(:stage).to_s) }
