# Capistrano::SCM::LocalDir — an SCM plugin that takes the release from a local
# directory (:local_source_dir) instead of a repository. It lets the example run a full
# `cap local deploy` with no git remote; a real project keeps `capistrano/scm/git`.
require "capistrano/scm/plugin"

class Capistrano::SCM::LocalDir < Capistrano::SCM::Plugin
  def set_defaults
    set_if_empty :local_source_dir, "app"
  end

  def register_hooks
    after "deploy:new_release_path", "local_dir:create_release"
    before "deploy:set_current_revision", "local_dir:set_current_revision"
  end

  def define_tasks
    namespace :local_dir do
      desc "Copy the local source directory into the new release"
      task :create_release do
        src = fetch(:local_source_dir)
        on release_roles(:all) do
          execute :mkdir, "-p", release_path
          execute :cp, "-R", "#{src}/.", release_path
        end
      end

      desc "Record the revision: $REVISION, else git HEAD of the source, else 'unknown'"
      task :set_current_revision do
        set :current_revision, Capistrano::SCM::LocalDir.revision_of(fetch(:local_source_dir))
      end
    end
  end

  # The revision being deployed, as a string (never nil).
  def self.revision_of(dir)
    return ENV["REVISION"] unless ENV["REVISION"].to_s.empty?

    rev = IO.popen(["git", "-C", dir.to_s, "rev-parse", "--short=12", "HEAD"],
                   err: File::NULL, &:read).to_s.strip
    $?.success? && !rev.empty? ? rev : "unknown"
  rescue SystemCallError
    "unknown"
  end
end
