# config/deploy/local.rb — a stage that deploys to this machine without SSH: SSHKit's
# local backend runs every command here, and the LocalDir SCM copies ./app (or
# $CAP_SOURCE_DIR) into the new release. deploy_to is under /tmp unless CAP_DEPLOY_TO says
# otherwise.
set :sshkit_backend, SSHKit::Backend::Local
server "localhost", roles: %w[app], cmdb_ref: ENV["CMDB_HOST_REF"]

set :deploy_to, -> { ENV.fetch("CAP_DEPLOY_TO", "/tmp/capistrano-deploys/#{fetch(:application)}") }
set :local_source_dir, ENV.fetch("CAP_SOURCE_DIR", File.expand_path("../../app", __dir__))
