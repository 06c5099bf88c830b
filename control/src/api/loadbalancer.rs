//! `LoadBalancerService`.

use std::collections::HashSet;
use std::net::IpAddr;

use fulcrum_proto::internal::{command::Op, Objects};
use fulcrum_proto::v1::load_balancer_service_server::LoadBalancerService;
use fulcrum_proto::v1::*;
use tonic::{Request, Response, Status};

use super::listing::{check_options, page, visible};
use super::new_objects::{new_id, Tree};
use super::status_tree::status_tree;
use super::{first, Api, Caller, Store};
use crate::defaults;
use crate::validate;

/// Provider names accepted for Octavia scripts' sake; all mean Fulcrum.
const PROVIDERS: [&str; 4] = ["", "fulcrum", "amphora", "octavia"];
/// How often a create retries when a concurrently allocated VIP took its address.
const VIP_ALLOCATION_ATTEMPTS: usize = 5;

impl<S: Store> Api<S> {
    /// Checks a create request's VIP fields and picks the address: the one given, or a free
    /// one of the named subnet.
    async fn choose_vip(&self, c: &LoadBalancerCreate) -> Result<(String, String), Status> {
        let subnet_name = if c.vip_subnet_id.is_empty() {
            &c.vip_network_id
        } else {
            &c.vip_subnet_id
        };
        let subnet = if subnet_name.is_empty() {
            None
        } else {
            let known: Vec<&str> = self.inner.subnets.iter().map(|s| s.name.as_str()).collect();
            Some(
                self.inner
                    .subnets
                    .iter()
                    .find(|s| &s.name == subnet_name)
                    .cloned()
                    .ok_or_else(|| {
                        Status::invalid_argument(format!(
                            "vip_subnet_id: subnet '{subnet_name}' not found; configured subnets: {}",
                            if known.is_empty() { "none".to_string() } else { known.join(", ") }
                        ))
                    })?,
            )
        };
        if !c.vip_address.is_empty() {
            let ip: IpAddr = validate::parse_ip("vip_address", &c.vip_address)
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            if let Some(s) = &subnet {
                if !s.contains(&ip) {
                    return Err(Status::invalid_argument(format!(
                        "vip_address: {ip} is not inside subnet {} ({})",
                        s.name, s.cidr
                    )));
                }
            }
            return Ok((ip.to_string(), subnet.map(|s| s.name).unwrap_or_default()));
        }
        let Some(subnet) = subnet else {
            return Err(Status::invalid_argument(
                "vip_address: VIP must contain one of: vip_address, vip_subnet_id, vip_network_id",
            ));
        };
        let used: HashSet<IpAddr> = self
            .read(|state| {
                state
                    .all::<LoadBalancer>()
                    .filter_map(|lb| lb.vip_address.parse().ok())
                    .collect()
            })
            .await?;
        let ip = subnet.allocate(&used).ok_or_else(|| {
            Status::resource_exhausted(format!(
                "vip_subnet_id: no free address left in subnet {} ({}-{})",
                subnet.name, subnet.first, subnet.last
            ))
        })?;
        Ok((ip.to_string(), subnet.name))
    }

    fn check_unsupported(c: &LoadBalancerCreate) -> Result<(), Status> {
        if !PROVIDERS.contains(&c.provider.as_str()) {
            return Err(Status::invalid_argument(format!(
                "provider: '{}' is not a provider here; use 'fulcrum' (or leave it out)",
                c.provider
            )));
        }
        for (field, value) in [
            ("flavor_id", &c.flavor_id),
            ("availability_zone", &c.availability_zone),
            ("vip_port_id", &c.vip_port_id),
        ] {
            if !value.is_empty() {
                return Err(Status::invalid_argument(format!(
                    "{field}: '{value}' not found (Fulcrum has no {})",
                    field.trim_end_matches("_id").replace('_', " ")
                )));
            }
        }
        if !c.additional_vips.is_empty() {
            return Err(Status::invalid_argument(
                "additional_vips: Fulcrum load balancers have one VIP",
            ));
        }
        if !c.vip_sg_ids.is_empty() {
            return Err(Status::invalid_argument(
                "vip_sg_ids: security groups are not supported; use listeners' allowed_cidrs",
            ));
        }
        Ok(())
    }

    fn tree(
        c: &LoadBalancerCreate,
        caller: &Caller,
        vip: (String, String),
    ) -> Result<Objects, Status> {
        let project = caller.target_project(&c.project_id)?;
        let lb = LoadBalancer {
            id: new_id(),
            name: c.name.clone(),
            description: c.description.clone(),
            admin_state_up: c.admin_state_up.unwrap_or(true),
            project_id: project.clone(),
            vip_address: vip.0,
            vip_subnet_id: vip.1,
            vip_network_id: c.vip_network_id.clone(),
            vip_qos_policy_id: c.vip_qos_policy_id.clone(),
            provider: defaults::PROVIDER.into(),
            vip_vnic_type: "normal".into(),
            tags: c.tags.clone(),
            ..Default::default()
        };
        let mut tree = Tree::new(&lb.id, &project);
        tree.add_pools(&c.pools)?;
        for (i, l) in c.listeners.iter().enumerate() {
            tree.add_listener(i, l)?;
        }
        let mut objects = tree.objects;
        objects.loadbalancers.push(lb);
        Ok(objects)
    }
}

#[tonic::async_trait]
impl<S: Store> LoadBalancerService for Api<S> {
    async fn create_load_balancer(
        &self,
        request: Request<CreateLoadBalancerRequest>,
    ) -> Result<Response<LoadBalancer>, Status> {
        let caller = self.caller(&request)?;
        caller.require_write()?;
        let c = request
            .get_ref()
            .loadbalancer
            .clone()
            .ok_or_else(|| Status::invalid_argument("loadbalancer: is required"))?;
        Self::check_unsupported(&c)?;
        let allocating = c.vip_address.is_empty();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let vip = self.choose_vip(&c).await?;
            let objects = Self::tree(&c, &caller, vip)?;
            match self
                .propose_objects(&request, &caller, Op::Create(objects))
                .await
            {
                Ok(o) => return Ok(Response::new(first(o.loadbalancers, "load balancer")?)),
                Err(e)
                    if allocating
                        && e.code() == tonic::Code::AlreadyExists
                        && e.message().starts_with("vip_address")
                        && attempt < VIP_ALLOCATION_ATTEMPTS => {}
                Err(e) => return Err(e),
            }
        }
    }

    async fn get_load_balancer(
        &self,
        request: Request<GetLoadBalancerRequest>,
    ) -> Result<Response<LoadBalancer>, Status> {
        let caller = self.caller(&request)?;
        let id = request.into_inner().loadbalancer_id;
        let lb = self
            .read_with(move |s| visible::<LoadBalancer>(s, &caller, &id))
            .await?;
        Ok(Response::new(lb))
    }

    async fn list_load_balancers(
        &self,
        request: Request<ListLoadBalancersRequest>,
    ) -> Result<Response<ListLoadBalancersResponse>, Status> {
        let caller = self.caller(&request)?;
        let r = request.into_inner();
        let options = r.options.clone().unwrap_or_default();
        check_options(&caller, &options)?;
        let (loadbalancers, next_marker) = self
            .read_with(move |s| {
                page::<LoadBalancer>(s, &caller, &options, |lb| {
                    (r.vip_address.is_empty() || lb.vip_address == r.vip_address)
                        && (r.vip_subnet_id.is_empty() || lb.vip_subnet_id == r.vip_subnet_id)
                        && (r.provider.is_empty() || lb.provider == r.provider)
                })
            })
            .await?;
        Ok(Response::new(ListLoadBalancersResponse {
            loadbalancers,
            next_marker,
        }))
    }

    async fn update_load_balancer(
        &self,
        request: Request<UpdateLoadBalancerRequest>,
    ) -> Result<Response<LoadBalancer>, Status> {
        let caller = self.caller(&request)?;
        caller.require_write()?;
        let (c, id) = (caller.clone(), request.get_ref().loadbalancer_id.clone());
        self.read_with(move |s| visible::<LoadBalancer>(s, &c, &id))
            .await?;
        let op = Op::UpdateLoadbalancer(request.get_ref().clone());
        let o = self.propose_objects(&request, &caller, op).await?;
        Ok(Response::new(first(o.loadbalancers, "load balancer")?))
    }

    async fn delete_load_balancer(
        &self,
        request: Request<DeleteLoadBalancerRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        let caller = self.caller(&request)?;
        caller.require_write()?;
        let (c, id) = (caller.clone(), request.get_ref().loadbalancer_id.clone());
        self.read_with(move |s| visible::<LoadBalancer>(s, &c, &id))
            .await?;
        let op = Op::DeleteLoadbalancer(request.get_ref().clone());
        self.propose_objects(&request, &caller, op).await?;
        Ok(Response::new(DeleteResponse {}))
    }

    async fn get_load_balancer_status_tree(
        &self,
        request: Request<GetLoadBalancerStatusTreeRequest>,
    ) -> Result<Response<StatusTree>, Status> {
        let caller = self.caller(&request)?;
        let id = request.into_inner().loadbalancer_id;
        let tree = self
            .read_with(move |s| {
                let lb = visible::<LoadBalancer>(s, &caller, &id)?;
                Ok(status_tree(s, &lb))
            })
            .await?;
        Ok(Response::new(tree))
    }

    async fn get_load_balancer_stats(
        &self,
        request: Request<GetLoadBalancerStatsRequest>,
    ) -> Result<Response<Stats>, Status> {
        let caller = self.caller(&request)?;
        let id = request.into_inner().loadbalancer_id;
        let lb = self
            .read_with(move |s| visible::<LoadBalancer>(s, &caller, &id))
            .await?;
        let mut total = Stats::default();
        for listener in &lb.listener_ids {
            let s = self.listener_stats(listener);
            total.bytes_in += s.bytes_in;
            total.bytes_out += s.bytes_out;
            total.active_connections += s.active_connections;
            total.total_connections += s.total_connections;
            total.request_errors += s.request_errors;
        }
        Ok(Response::new(total))
    }

    async fn failover_load_balancer(
        &self,
        request: Request<FailoverLoadBalancerRequest>,
    ) -> Result<Response<FailoverLoadBalancerResponse>, Status> {
        let caller = self.caller(&request)?;
        caller.require_admin("failover")?;
        let (c, id) = (caller.clone(), request.get_ref().loadbalancer_id.clone());
        self.read_with(move |s| visible::<LoadBalancer>(s, &c, &id))
            .await?;
        let op = Op::Failover(request.get_ref().clone());
        let o = self.propose_objects(&request, &caller, op).await?;
        Ok(Response::new(FailoverLoadBalancerResponse {
            loadbalancer: Some(first(o.loadbalancers, "load balancer")?),
        }))
    }
}
