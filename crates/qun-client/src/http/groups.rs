//! The group routes of the REST client: groups, members, join requests and
//! invitations, announcements, essence messages and the other group pages.
//!
//! Group messages need no methods of their own: they travel on the group's
//! conversation ([`GroupView::conversation`]) through the ordinary
//! conversation routes and WebSocket frames.

use qun_wire::{
    AnnouncementDraft, AnnouncementId, AnnouncementView, AnswerInvitation, AtAllQuotaView,
    CardRequest, Confirmation, CreateGroupRequest, CreateInviteLink, EssenceView, GroupId,
    GroupSettingsPatch, GroupView, Honour, InviteLinkView, InviteRequest, JoinGroupRequest,
    JoinRequestId, JoinRequestView, JoinResult, KickRequest, MemberDeltaView, MemberPage,
    MemberView, MuteAllRequest, MuteRequest, ReceiptsView, ReviewRequest, Role, RoleRequest, Seq,
    TierRequest, TitleRequest, TransferRequest, UserId,
};
use reqwest::Method;

use super::{encode_segment, query_string, Client};
use crate::ClientError;

impl Client {
    // ---- groups ----

    /// `POST /api/v1/groups`: creates a group owned by the caller.
    pub async fn create_group(
        &self,
        request: &CreateGroupRequest,
    ) -> Result<GroupView, ClientError> {
        self.call(Method::POST, "/api/v1/groups", Some(request))
            .await
    }

    /// `GET /api/v1/groups`: finds a group by number, or listed groups by
    /// keyword and category; every filter is optional.
    pub async fn search_groups(
        &self,
        number: Option<GroupId>,
        keyword: Option<&str>,
        category: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Vec<GroupView>, ClientError> {
        let query = query_string(&[
            ("number", number.map(|n| n.to_string())),
            ("keyword", keyword.map(str::to_owned)),
            ("category", category.map(str::to_owned)),
            ("limit", limit.map(|n| n.to_string())),
        ]);
        self.get(&format!("/api/v1/groups{query}")).await
    }

    /// `GET /api/v1/groups/mine`: the groups the caller belongs to.
    pub async fn my_groups(&self) -> Result<Vec<GroupView>, ClientError> {
        self.get("/api/v1/groups/mine").await
    }

    /// `GET /api/v1/groups/{id}`: a group's profile and settings.
    pub async fn group(&self, id: GroupId) -> Result<GroupView, ClientError> {
        self.get(&format!("/api/v1/groups/{id}")).await
    }

    /// `PATCH /api/v1/groups/{id}`: changes settings; absent fields stay as they are.
    pub async fn update_group(
        &self,
        id: GroupId,
        patch: &GroupSettingsPatch,
    ) -> Result<GroupView, ClientError> {
        let path = format!("/api/v1/groups/{id}");
        self.call(Method::PATCH, &path, Some(patch)).await
    }

    /// `DELETE /api/v1/groups/{id}`: dissolves the group (owner only); its
    /// history stays readable.
    pub async fn dissolve_group(&self, id: GroupId) -> Result<(), ClientError> {
        let path = format!("/api/v1/groups/{id}");
        self.call_empty(Method::DELETE, &path, None::<&()>).await
    }

    /// `PUT /api/v1/groups/{id}/tier`: moves the group to another tier of the
    /// configured ladder, which sets its member cap.
    pub async fn set_group_tier(&self, id: GroupId, tier: u32) -> Result<GroupView, ClientError> {
        let path = format!("/api/v1/groups/{id}/tier");
        self.call(Method::PUT, &path, Some(&TierRequest { tier }))
            .await
    }

    /// `POST /api/v1/groups/{id}/transfer`: hands ownership to another member.
    pub async fn transfer_group(
        &self,
        id: GroupId,
        user_id: UserId,
    ) -> Result<GroupView, ClientError> {
        let path = format!("/api/v1/groups/{id}/transfer");
        self.call(Method::POST, &path, Some(&TransferRequest { user_id }))
            .await
    }

    /// `PUT /api/v1/groups/{id}/mute`: mutes or unmutes everyone but the owner
    /// and admins.
    pub async fn mute_all(&self, id: GroupId, muted: bool) -> Result<GroupView, ClientError> {
        let path = format!("/api/v1/groups/{id}/mute");
        self.call(Method::PUT, &path, Some(&MuteAllRequest { muted }))
            .await
    }

    // ---- joining and leaving ----

    /// `POST /api/v1/groups/{id}/join`: joins at once or files a request,
    /// depending on the group's join mode.
    pub async fn join_group(
        &self,
        id: GroupId,
        message: &str,
        answer: Option<&str>,
    ) -> Result<JoinResult, ClientError> {
        let body = JoinGroupRequest {
            message: message.to_owned(),
            answer: answer.map(str::to_owned),
        };
        let path = format!("/api/v1/groups/{id}/join");
        self.call(Method::POST, &path, Some(&body)).await
    }

    /// `POST /api/v1/groups/{id}/leave`: leaves the group (the owner must
    /// transfer or dissolve it instead).
    pub async fn leave_group(&self, id: GroupId) -> Result<(), ClientError> {
        let path = format!("/api/v1/groups/{id}/leave");
        self.call_empty(Method::POST, &path, None::<&()>).await
    }

    /// `POST /api/v1/groups/{id}/invitations`: invites a user.
    pub async fn invite(
        &self,
        id: GroupId,
        user_id: UserId,
    ) -> Result<JoinRequestView, ClientError> {
        let path = format!("/api/v1/groups/{id}/invitations");
        self.call(Method::POST, &path, Some(&InviteRequest { user_id }))
            .await
    }

    /// `POST /api/v1/groups/{id}/invite-links`: creates a link anyone can join
    /// with, until it expires or is used up.
    pub async fn create_invite_link(
        &self,
        id: GroupId,
        expires_in_secs: Option<u64>,
        max_uses: Option<u32>,
    ) -> Result<InviteLinkView, ClientError> {
        let body = CreateInviteLink {
            expires_in_secs,
            max_uses,
        };
        let path = format!("/api/v1/groups/{id}/invite-links");
        self.call(Method::POST, &path, Some(&body)).await
    }

    /// `POST /api/v1/invite-links/{code}/join`: joins through an invite link.
    pub async fn join_by_link(&self, code: &str) -> Result<JoinResult, ClientError> {
        let path = format!("/api/v1/invite-links/{}/join", encode_segment(code));
        self.call(Method::POST, &path, None::<&()>).await
    }

    /// `GET /api/v1/groups/{id}/join-requests`: pending applications and
    /// invitations of a group (owner and admins).
    pub async fn join_requests(&self, id: GroupId) -> Result<Vec<JoinRequestView>, ClientError> {
        self.get(&format!("/api/v1/groups/{id}/join-requests"))
            .await
    }

    /// `GET /api/v1/join-requests/mine`: the caller's own applications and the
    /// invitations addressed to the caller.
    pub async fn my_join_requests(&self) -> Result<Vec<JoinRequestView>, ClientError> {
        self.get("/api/v1/join-requests/mine").await
    }

    /// `POST /api/v1/join-requests/{id}/review`: approves or refuses an
    /// application (owner and admins); `reason` is shown when refusing.
    pub async fn review_join_request(
        &self,
        id: JoinRequestId,
        approve: bool,
        reason: Option<&str>,
    ) -> Result<JoinRequestView, ClientError> {
        let body = ReviewRequest {
            approve,
            reason: reason.map(str::to_owned),
        };
        let path = format!("/api/v1/join-requests/{id}/review");
        self.call(Method::POST, &path, Some(&body)).await
    }

    /// `POST /api/v1/join-requests/{id}/answer`: the invitee accepts or
    /// refuses an invitation.
    pub async fn answer_invitation(
        &self,
        id: JoinRequestId,
        accept: bool,
    ) -> Result<JoinResult, ClientError> {
        let path = format!("/api/v1/join-requests/{id}/answer");
        self.call(Method::POST, &path, Some(&AnswerInvitation { accept }))
            .await
    }

    // ---- members ----

    /// `GET /api/v1/groups/{id}/members`: a page of members ascending by
    /// number, after `after`.
    pub async fn members(
        &self,
        id: GroupId,
        after: Option<UserId>,
        limit: Option<u32>,
    ) -> Result<MemberPage, ClientError> {
        let query = query_string(&[
            ("after", after.map(|u| u.to_string())),
            ("limit", limit.map(|n| n.to_string())),
        ]);
        self.get(&format!("/api/v1/groups/{id}/members{query}"))
            .await
    }

    /// `GET /api/v1/groups/{id}/members/changes`: what changed in the member
    /// list since version `since` (from [`MemberPage::version`]).
    pub async fn member_changes(
        &self,
        id: GroupId,
        since: u64,
    ) -> Result<MemberDeltaView, ClientError> {
        self.get(&format!(
            "/api/v1/groups/{id}/members/changes?since={since}"
        ))
        .await
    }

    /// `GET /api/v1/groups/{id}/members/me`: the caller's own member entry.
    pub async fn my_membership(&self, id: GroupId) -> Result<MemberView, ClientError> {
        self.get(&format!("/api/v1/groups/{id}/members/me")).await
    }

    /// `POST /api/v1/groups/{id}/members/{user}/kick`: removes a member,
    /// and with `ban` forbids them to ask again.
    pub async fn kick(&self, id: GroupId, user: UserId, ban: bool) -> Result<(), ClientError> {
        let path = format!("/api/v1/groups/{id}/members/{user}/kick");
        self.call_empty(Method::POST, &path, Some(&KickRequest { ban }))
            .await
    }

    /// `DELETE /api/v1/groups/{id}/bans/{user}`: lets a banned user ask again.
    pub async fn unban(&self, id: GroupId, user: UserId) -> Result<(), ClientError> {
        let path = format!("/api/v1/groups/{id}/bans/{user}");
        self.call_empty(Method::DELETE, &path, None::<&()>).await
    }

    /// `PUT /api/v1/groups/{id}/members/{user}/mute`: mutes a member for
    /// `secs` seconds (0 unmutes).
    pub async fn mute_member(
        &self,
        id: GroupId,
        user: UserId,
        secs: u64,
    ) -> Result<MemberView, ClientError> {
        let path = format!("/api/v1/groups/{id}/members/{user}/mute");
        self.call(Method::PUT, &path, Some(&MuteRequest { secs }))
            .await
    }

    /// `PUT /api/v1/groups/{id}/members/{user}/role`: makes a member an admin
    /// or a plain member again (owner only).
    pub async fn set_role(
        &self,
        id: GroupId,
        user: UserId,
        role: Role,
    ) -> Result<MemberView, ClientError> {
        let path = format!("/api/v1/groups/{id}/members/{user}/role");
        self.call(Method::PUT, &path, Some(&RoleRequest { role }))
            .await
    }

    /// `PUT /api/v1/groups/{id}/members/{user}/title`: gives a member a special
    /// title, for `expires_in_secs` or for good; `None` clears it.
    pub async fn set_title(
        &self,
        id: GroupId,
        user: UserId,
        title: Option<&str>,
        expires_in_secs: Option<u64>,
    ) -> Result<MemberView, ClientError> {
        let body = TitleRequest {
            title: title.map(str::to_owned),
            expires_in_secs,
        };
        let path = format!("/api/v1/groups/{id}/members/{user}/title");
        self.call(Method::PUT, &path, Some(&body)).await
    }

    /// `PUT /api/v1/groups/{id}/members/{user}/card`: sets a member's group
    /// card (the name shown in this group); `None` clears it.
    pub async fn set_card(
        &self,
        id: GroupId,
        user: UserId,
        card: Option<&str>,
    ) -> Result<MemberView, ClientError> {
        let body = CardRequest {
            card: card.map(str::to_owned),
        };
        let path = format!("/api/v1/groups/{id}/members/{user}/card");
        self.call(Method::PUT, &path, Some(&body)).await
    }

    // ---- announcements ----

    /// `GET /api/v1/groups/{id}/announcements`: the group's announcements.
    pub async fn announcements(&self, id: GroupId) -> Result<Vec<AnnouncementView>, ClientError> {
        self.get(&format!("/api/v1/groups/{id}/announcements"))
            .await
    }

    /// `POST /api/v1/groups/{id}/announcements`: publishes an announcement.
    pub async fn create_announcement(
        &self,
        id: GroupId,
        draft: &AnnouncementDraft,
    ) -> Result<AnnouncementView, ClientError> {
        let path = format!("/api/v1/groups/{id}/announcements");
        self.call(Method::POST, &path, Some(draft)).await
    }

    /// `PUT /api/v1/groups/{id}/announcements/{aid}`: replaces an announcement's content.
    pub async fn edit_announcement(
        &self,
        id: GroupId,
        announcement: AnnouncementId,
        draft: &AnnouncementDraft,
    ) -> Result<AnnouncementView, ClientError> {
        let path = format!("/api/v1/groups/{id}/announcements/{announcement}");
        self.call(Method::PUT, &path, Some(draft)).await
    }

    /// `DELETE /api/v1/groups/{id}/announcements/{aid}`: deletes an announcement.
    pub async fn delete_announcement(
        &self,
        id: GroupId,
        announcement: AnnouncementId,
    ) -> Result<(), ClientError> {
        let path = format!("/api/v1/groups/{id}/announcements/{announcement}");
        self.call_empty(Method::DELETE, &path, None::<&()>).await
    }

    /// `POST /api/v1/groups/{id}/announcements/{aid}/confirm`: confirms having
    /// read an announcement that asks for it.
    pub async fn confirm_announcement(
        &self,
        id: GroupId,
        announcement: AnnouncementId,
    ) -> Result<(), ClientError> {
        let path = format!("/api/v1/groups/{id}/announcements/{announcement}/confirm");
        self.call_empty(Method::POST, &path, None::<&()>).await
    }

    /// `GET /api/v1/groups/{id}/announcements/{aid}/confirmations`: who has
    /// confirmed an announcement.
    pub async fn announcement_confirmations(
        &self,
        id: GroupId,
        announcement: AnnouncementId,
    ) -> Result<Vec<Confirmation>, ClientError> {
        self.get(&format!(
            "/api/v1/groups/{id}/announcements/{announcement}/confirmations"
        ))
        .await
    }

    // ---- essence, receipts, honours and quotas ----

    /// `GET /api/v1/groups/{id}/essence`: the group's essence messages.
    pub async fn essence(&self, id: GroupId) -> Result<Vec<EssenceView>, ClientError> {
        self.get(&format!("/api/v1/groups/{id}/essence")).await
    }

    /// `PUT` (`set`) or `DELETE` `/api/v1/groups/{id}/essence/{seq}`: marks a
    /// message as essence or unmarks it.
    pub async fn set_essence(&self, id: GroupId, seq: Seq, set: bool) -> Result<(), ClientError> {
        let method = if set { Method::PUT } else { Method::DELETE };
        let path = format!("/api/v1/groups/{id}/essence/{seq}");
        self.call_empty(method, &path, None::<&()>).await
    }

    /// `GET /api/v1/groups/{id}/receipts/{seq}`: how many members, and in small
    /// groups which ones, have read a message.
    pub async fn receipts(&self, id: GroupId, seq: Seq) -> Result<ReceiptsView, ClientError> {
        self.get(&format!("/api/v1/groups/{id}/receipts/{seq}"))
            .await
    }

    /// `GET /api/v1/groups/{id}/honours`: today's most talkative members.
    pub async fn honours(&self, id: GroupId) -> Result<Vec<Honour>, ClientError> {
        self.get(&format!("/api/v1/groups/{id}/honours")).await
    }

    /// `GET /api/v1/groups/{id}/at-all-quota`: the @all mentions left today.
    pub async fn at_all_quota(&self, id: GroupId) -> Result<AtAllQuotaView, ClientError> {
        self.get(&format!("/api/v1/groups/{id}/at-all-quota")).await
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::one_shot_server;
    use super::*;

    /// The request line the client sent.
    fn request_line(request: &str) -> &str {
        request.lines().next().unwrap_or_default()
    }

    #[tokio::test]
    async fn search_sends_only_given_filters_percent_encoded() {
        let (base, server) = one_shot_server("200 OK", "[]").await;
        let found = Client::new(&base)
            .search_groups(None, Some("rust & go"), Some("游戏"), Some(5))
            .await
            .unwrap();
        assert!(found.is_empty());
        assert_eq!(
            request_line(&server.await.unwrap()),
            "GET /api/v1/groups?keyword=rust%20%26%20go&category=%E6%B8%B8%E6%88%8F&limit=5 HTTP/1.1"
        );
    }

    #[tokio::test]
    async fn unsetting_essence_is_a_delete() {
        let (base, server) = one_shot_server("204 No Content", "").await;
        Client::new(&base)
            .set_essence(GroupId(7), Seq(42), false)
            .await
            .unwrap();
        assert_eq!(
            request_line(&server.await.unwrap()),
            "DELETE /api/v1/groups/7/essence/42 HTTP/1.1"
        );
    }

    #[tokio::test]
    async fn invite_codes_are_percent_encoded_in_the_path() {
        let body = r#"{"joined":false,"member":null,"request":null}"#;
        let (base, server) = one_shot_server("200 OK", body).await;
        let result = Client::new(&base).join_by_link("a/b?c").await.unwrap();
        assert!(!result.joined);
        assert_eq!(
            request_line(&server.await.unwrap()),
            "POST /api/v1/invite-links/a%2Fb%3Fc/join HTTP/1.1"
        );
    }

    #[tokio::test]
    async fn kick_sends_the_ban_flag() {
        let (base, server) = one_shot_server("204 No Content", "").await;
        Client::new(&base)
            .kick(GroupId(7), UserId(10002), true)
            .await
            .unwrap();
        let request = server.await.unwrap();
        assert_eq!(
            request_line(&request),
            "POST /api/v1/groups/7/members/10002/kick HTTP/1.1"
        );
        assert!(request.ends_with(r#"{"ban":true}"#), "{request}");
    }
}
